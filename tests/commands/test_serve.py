"""`tfcli serve` at the CLI edge: its help, and the one line a missing optional extra gives.
The server itself is tested in tests/serving/."""

from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from tfcli.cli import cli


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    result = CliRunner().invoke(cli, ["serve", str(tmp_path / "any.safetensors")])
    assert result.exit_code != 0
    assert str(result.exception) == "tfcli serve needs uvicorn: pip install 'tfcli[serve]'"


def test_help_has_a_curl_example():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0 and "curl -s localhost:8080/translate" in result.output
    assert json.dumps("sentences") in result.output and "--max-batch-requests" in result.output
