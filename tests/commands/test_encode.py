"""`tfcli encode` end to end: explicit files, recipe splits, summary, refusals, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer

from tfcli.cli import cli
from tfcli.data.split import ParallelData, TextData, open_split
from tfcli.errors import DataError

ASSETS = Path(__file__).parents[1] / "assets"
SRC, TGT = ASSETS / "enc_train.src", ASSETS / "enc_train.tgt"


def invoke(*args: str):
    return CliRunner().invoke(cli, ["encode", *map(str, args)])


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    result = CliRunner().invoke(
        cli,
        [
            "tokenize",
            str(SRC),
            str(TGT),
            "--vocab-size",
            "300",
            "--min-frequency",
            "1",
            "-o",
            str(path),
        ],
    )
    assert result.exit_code == 0, result.output
    return path


def _ids(tok: Path, path: Path) -> list[list[int]]:
    t = Tokenizer.from_file(str(tok))
    lines = path.read_text(encoding="utf-8").splitlines()
    return [e.ids for e in t.encode_batch(lines, add_special_tokens=False)]


def test_parallel_files_to_a_split_with_summary(tmp_path, tok):
    out = tmp_path / "data" / "train"
    result = invoke("--src", SRC, "--tgt", TGT, "--tokenizer", tok, "-o", out, "--min-len", "0")
    assert result.exit_code == 0, result.output
    data = open_split(out)
    assert isinstance(data, ParallelData) and len(data) == 128
    assert [data.src[i].tolist() for i in range(128)] == _ids(tok, SRC)
    assert [data.tgt[i].tolist() for i in range(128)] == _ids(tok, TGT)
    for word in ("Encoded", "examples", "dropped", "uint16", "tokens/s", "128"):
        assert word in result.stderr


def test_text_with_glob_and_default_output_in_run_dir(tmp_path, tok):
    (tmp_path / "a.txt").write_text("the cat sat\non the mat\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("le chat\n", encoding="utf-8")
    result = invoke(
        "--text",
        str(tmp_path / "*.txt"),
        "--tokenizer",
        tok,
        "--split",
        "valid",
        "--run-dir",
        "run",
    )
    assert result.exit_code == 0, result.output
    data = open_split(tmp_path / "run" / "data" / "valid")
    assert isinstance(data, TextData) and len(data) == 3
    assert data.meta["filters"] == {"min_len": 1, "max_len": 0}  # text: long lines kept


def test_filters_flags_and_json(tmp_path, tok):
    result = invoke(
        "--src", SRC, "--tgt", TGT, "--tokenizer", tok, "-o", tmp_path / "f",
        "--min-len", "4", "--max-len", "20", "--max-len-ratio", "1.5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metas = json.loads(result.stdout)
    meta = metas["train"]
    assert meta["filters"] == {"min_len": 4, "max_len": 20, "max_len_ratio": 1.5}
    assert meta["dropped"]["too_short"] > 0 and meta["dropped"]["ratio"] > 0
    assert meta["num_examples"] + sum(meta["dropped"].values()) == 128
    assert "dropped (too_short / too_long / ratio)" in result.stderr


def test_recipe_encodes_every_split_and_skips_current_ones(tmp_path):
    src = SRC.read_text(encoding="utf-8").splitlines()
    tgt = TGT.read_text(encoding="utf-8").splitlines()
    for name, lines in {
        "tr.src": src[:100],
        "tr.tgt": tgt[:100],
        "va.src": src[100:],
        "va.tgt": tgt[100:],
    }.items():
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "r.yaml").write_text(
        "run_dir: run\n"
        "data: {src: [tr.src], tgt: [tr.tgt], valid_src: [va.src], valid_tgt: [va.tgt]}\n"
        "tokenizer: {vocab_size: 300, min_frequency: 1}\n",
        encoding="utf-8",
    )
    result = invoke("r.yaml")
    assert result.exit_code == 0, result.output
    assert "tokenize:" in result.stderr and "encode: train split (not encoded yet)" in result.stderr
    assert len(open_split(tmp_path / "run" / "data" / "valid")) == 28
    stamp = (tmp_path / "run" / "data" / "train" / "meta.json").stat().st_mtime_ns
    again = invoke("r.yaml")
    assert again.exit_code == 0 and "up to date" in again.stderr
    assert (tmp_path / "run" / "data" / "train" / "meta.json").stat().st_mtime_ns == stamp
    forced = invoke("r.yaml", "--force")
    assert forced.exit_code == 0 and "(--force)" in forced.stderr
    assert (tmp_path / "run" / "data" / "train" / "meta.json").stat().st_mtime_ns != stamp


def test_recipe_without_data_names_the_keys(tmp_path):
    result = invoke("--run-dir", "run")
    assert isinstance(result.exception, DataError)
    assert "data.src and data.tgt" in str(result.exception) and "data.text" in str(result.exception)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--src", "a"], "--src and --tgt go together"),
        (["--src", "a", "--tgt", "b", "--text", "c"], "not both"),
        (["-o", "out"], "-o/--output needs"),
    ],
)
def test_usage_errors(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfcli", "encode", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_misaligned_files_one_line_error_and_nothing_written(tmp_path, tok):
    short = tmp_path / "short.tgt"
    short.write_text(
        "\n".join(TGT.read_text(encoding="utf-8").splitlines()[:90]) + "\n", encoding="utf-8"
    )
    proc = _run(
        "--src", SRC, "--tgt", short, "--tokenizer", tok, "-o", tmp_path / "out", cwd=tmp_path
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(err) == 1 and "128 lines" in err[0] and "90" in err[0] and "short.tgt" in err[0]
    assert not (tmp_path / "out").exists()
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


def test_other_tokenizer_refused_then_force(tmp_path, tok):
    other = tmp_path / "other.json"
    result = CliRunner().invoke(
        cli, ["tokenize", str(SRC), "--vocab-size", "250", "--min-frequency", "1", "-o", str(other)]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "split"
    assert invoke("--text", SRC, "--tokenizer", tok, "-o", out).exit_code == 0
    proc = _run("--text", SRC, "--tokenizer", other, "-o", out, cwd=tmp_path)
    assert (
        proc.returncode == 1 and "different tokenizer" in proc.stderr and "--force" in proc.stderr
    )
    assert invoke("--text", SRC, "--tokenizer", other, "-o", out, "--force").exit_code == 0
    assert open_split(out).text.lengths.sum() == sum(len(r) for r in _ids(other, SRC))


def test_missing_tokenizer_and_input(tmp_path, tok):
    result = invoke("--text", SRC, "--tokenizer", tmp_path / "nope.json", "-o", tmp_path / "o")
    assert "nope.json" in str(result.exception) and "tfcli tokenize" in str(result.exception)
    result = invoke("--text", tmp_path / "missing.txt", "--tokenizer", tok, "-o", tmp_path / "o")
    assert "missing.txt" in str(result.exception)


def test_ctrl_c_with_worker_processes_leaves_nothing_behind(tmp_path, tok):
    """SIGINT in the middle of a 2-worker run: exit 130, one line, no split, no temp dir."""
    import signal
    import time

    big = tmp_path / "big.txt"
    lines = SRC.read_text(encoding="utf-8")
    big.write_text(lines * 3000, encoding="utf-8")  # ~380k lines, several seconds to encode
    cmd = [sys.executable, "-m", "tfcli", "encode", "--text", str(big), "--tokenizer", str(tok)]
    proc = subprocess.Popen(
        [*cmd, "-o", str(tmp_path / "out"), "-j", "2"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("out.tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_path.glob("out.tmp-*")), "encoding started"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("Error:")] == ["Error: aborted"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


def test_recipe_with_parallel_and_text_data_encodes_one_kind(tmp_path):
    """data/train is either parallel or text: parallel by default, --kind text for the MLM."""
    (tmp_path / "mono.txt").write_text("only one side here\nand a second line\n", encoding="utf-8")
    (tmp_path / "r.yaml").write_text(
        f"run_dir: run\ndata: {{src: [{SRC}], tgt: [{TGT}], text: [mono.txt]}}\n"
        "tokenizer: {vocab_size: 300, min_frequency: 1}\n",
        encoding="utf-8",
    )
    result = invoke("r.yaml", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["train"]["kind"] == "parallel"
    assert "--kind text" in result.stderr
    again = invoke("r.yaml", "--kind", "text", "--run-dir", "run-mlm", "--json")
    assert again.exit_code == 0, again.output
    meta = json.loads(again.stdout)["train"]
    assert meta["kind"] == "text" and meta["num_examples"] == 2
    assert isinstance(open_split(tmp_path / "run" / "data" / "train"), ParallelData)
