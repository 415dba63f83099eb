"""The root command: instant help, pipeline order, examples everywhere, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from tfcli.cli import COMMANDS, cli

PIPELINE = ["tokenize", "encode", "train", "pretrain-mlm", "inspect", "decode"]


def test_help_lists_commands_in_pipeline_order():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = [
        line.split()[0]
        for line in result.output.split("Commands")[1].splitlines()[1:]
        if line.startswith("  ") and not line.startswith("   ")  # not a wrapped summary
    ]
    assert set(listed) == set(COMMANDS), listed
    in_order = [c for c in listed if c in PIPELINE]
    assert in_order == PIPELINE, f"every pipeline command is listed, in pipeline order: {listed}"


def test_help_imports_no_heavy_modules():
    code = (
        "import sys; from tfcli.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'tokenizers', 'numpy', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out


def test_pipeline_order_check_would_catch_a_swap(monkeypatch):
    swapped = dict(COMMANDS)
    order = list(swapped)
    i, j = order.index("encode"), order.index("train")
    order[i], order[j] = order[j], order[i]
    monkeypatch.setattr("tfcli.cli.COMMANDS", {k: swapped[k] for k in order})
    listed = cli.list_commands(None)
    assert [c for c in listed if c in PIPELINE] != PIPELINE


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_has_a_real_example(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`tfcli {name} --help` carries an example"
    assert f"tfcli {name}" in result.output


def test_errors_are_one_line_with_nonzero_exit():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfcli",
            "validate",
            "--set",
            "model.d_modle=3",
            "--set",
            "train.seed=x",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "did you mean 'model.d_model'" in lines[0] and "train.seed" in lines[0]


def test_debug_variable_shows_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "tfcli", "validate", "--set", "model.d_modle=3"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "TFCLI_DEBUG": "1"},
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_validate_prints_resolved_recipe():
    result = CliRunner().invoke(
        cli, ["validate", "--set", "model.d_model=256", "--run-dir", "runs/x"]
    )
    assert result.exit_code == 0, result.output
    assert "d_model: 256" in result.output and "run_dir: runs/x" in result.output


def test_recipes_list_show_copy(tmp_path):
    from tfcli.recipe import loader as recipe

    names = recipe.bundled_names()
    if not names:
        pytest.skip("no bundled recipes yet")
    runner = CliRunner()
    listing = runner.invoke(cli, ["recipes"])
    assert listing.exit_code == 0 and all(n in listing.output for n in names)
    shown = runner.invoke(cli, ["recipes", names[0]])
    assert shown.exit_code == 0 and shown.output == recipe.resolve_path(names[0]).read_text(
        encoding="utf-8"
    )
    dest = tmp_path / "mine.yaml"
    copied = runner.invoke(cli, ["recipes", names[0], "--copy", str(dest)])
    assert copied.exit_code == 0 and dest.read_text() == shown.output
    again = runner.invoke(cli, ["recipes", names[0], "--copy", str(dest)])
    assert again.exit_code != 0 and "already exists" in str(again.exception or again.output)
