"""`tfcli demo-data`: files, counts, sizes, seeds."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tfcli.cli import cli
from tfcli.demo import DEMO_FILES


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_writes_every_file_with_requested_sizes(tmp_path):
    result = CliRunner().invoke(
        cli,
        ["demo-data", "out", "--train", "400", "--valid", "30", "--test", "20", "--mono", "300"],
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(DEMO_FILES), "no temp files left behind"
    assert len(_lines(out / "train.src")) == len(_lines(out / "train.tgt")) == 400
    assert len(_lines(out / "valid.tgt")) == 30 and len(_lines(out / "test.src")) == 20
    assert len(_lines(out / "mono.train.txt")) == 300
    assert "train.src" in result.output and "400" in result.output, (
        "the table lists files and counts"
    )


def test_default_dir_small_size_and_seed(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["demo-data", "--size", "small"]).exit_code == 0
    first = (tmp_path / "demo" / "train.tgt").read_bytes()
    assert len(first.splitlines()) == 3000
    assert runner.invoke(cli, ["demo-data", "--size", "small", "--seed", "2"]).exit_code == 0
    assert (tmp_path / "demo" / "train.tgt").read_bytes() != first
    assert runner.invoke(cli, ["demo-data", "--size", "small", "--seed", "1"]).exit_code == 0
    assert (tmp_path / "demo" / "train.tgt").read_bytes() == first, "same seed, same bytes"


def test_bad_size_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["demo-data", "--train", "0"])
    assert result.exit_code == 2
    assert not (tmp_path / "demo").exists()
