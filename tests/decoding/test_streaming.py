"""`tfcli decode` streams: ten times the input lines, the same peak memory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_stream.py"
_spec = importlib.util.spec_from_file_location("bench_stream", _BENCH)
bench_stream = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_stream)


@pytest.mark.slow
def test_peak_memory_is_flat_in_the_number_of_input_lines(tmp_path):
    checkpoint = bench_stream.make_checkpoint(tmp_path)
    peaks = {}
    for n in (5_000, 50_000):
        src = tmp_path / f"in-{n}.txt"
        bench_stream.write_lines(src, n, 1)
        out = tmp_path / f"out-{n}.txt"
        _, peaks[n] = bench_stream.run_decode(checkpoint, src, out)
        assert sum(1 for _ in open(out, encoding="utf-8")) == n  # every line, in order
    assert peaks[50_000] <= 1.2 * peaks[5_000], peaks
