"""Shared fixtures. Tests write only under tmp_path and run with fixed seeds."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TFCLI_QUIET", "0")


@pytest.fixture(autouse=True)
def _isolate_cwd(tmp_path, monkeypatch):
    """Relative paths (run_dir defaults, demo/) resolve inside the test's own tmp dir."""
    monkeypatch.chdir(tmp_path)
    yield
