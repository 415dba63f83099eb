"""Training curves: reading metrics.jsonl as a killed run leaves it, and the PNG's panels."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tfcli.errors import TfcliError
from tfcli.report.plotting import plot_training_curves, read_metrics

DPI, PANEL_INCHES = 110, 3  # what plot_training_curves draws: 8 x 3 inches per panel


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_read_metrics_skips_cut_lines_and_records_without_a_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = [{"step": 1, "split": "train", "loss": 3.0}, {"step": 2, "split": "valid", "bleu": 1}]
    lines = [json.dumps(good[0]), '{"note": "no step"}', "[1, 2]", json.dumps(good[1])]
    path.write_text("\n".join(lines) + '\n{"step": 3, "spl', encoding="utf-8")
    assert read_metrics(path) == good


def test_read_metrics_of_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(TfcliError, match="cannot read"):
        read_metrics(tmp_path / "missing.jsonl")


@pytest.mark.parametrize(
    ("extra", "panels"),
    [
        ({}, 1),  # loss only
        ({"lr": 1e-3}, 2),  # + learning rate
        ({"lr": 1e-3, "bleu": 2.0}, 3),  # + validation metrics
    ],
)
def test_one_panel_per_kind_of_curve(tmp_path, extra, panels):
    records = []
    for step in (10, 20, 30):
        train = {"step": step, "split": "train", "loss": 4.0 - step / 20}
        if "lr" in extra:
            train["lr"] = extra["lr"]
        valid = {"step": step, "split": "valid", "loss": 4.5 - step / 20}
        if "bleu" in extra:
            valid["bleu"] = extra["bleu"] + step / 10
        records += [train, valid]
    out = plot_training_curves(records, tmp_path / "curves.png", title="run")
    assert out == tmp_path / "curves.png"
    assert png_size(out)[1] == panels * PANEL_INCHES * DPI
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temp file left


def test_nothing_to_plot_is_refused_and_writes_nothing(tmp_path):
    with pytest.raises(TfcliError, match="no training or validation records"):
        plot_training_curves([{"step": 1, "split": "test"}], tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()


def test_damaged_bytes_in_metrics_are_skipped_not_a_traceback(tmp_path):
    from tfcli.report.plotting import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1, "split": "train", "loss": 2.0}\n\xff\xfe\x00junk\n')
    assert [r["step"] for r in read_metrics(path)] == [1]
