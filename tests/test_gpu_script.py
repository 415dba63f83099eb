"""benchmarks/gpu.sh --smoke: the GPU check's whole pipeline on tiny shapes, so that the script
that a GPU session runs unprepared cannot rot. On CPU every CUDA-only part is skipped with its
reason; every other part runs and writes its JSON and markdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu  # noqa: E402

PARTS = ["tests", "train", "train_e2e", "decode", "mlm", "train_compile"]


def test_bf16_peaks_are_known_for_h100_and_h200_by_name() -> None:
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_tflops("NVIDIA H200") == 989.0
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu.peak_tflops("NVIDIA GeForce RTX 4090") is None


@pytest.mark.slow
def test_smoke_mode_writes_every_part_as_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    res = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu.sh"), str(out), "--smoke"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    result = json.loads((out / "gpu.json").read_text())
    env = result["environment"]
    assert env["mode"] == "smoke" and env["torch"] == torch.__version__
    parts = {p["name"]: p for p in result["parts"]}
    assert list(parts) == PARTS
    cuda = torch.cuda.is_available()
    for name, p in parts.items():
        if name == "train_compile" and not cuda:
            assert p["status"] == "skipped" and "GPU" in p["reason"]
            continue
        assert p["status"] == "ok", (name, p["reason"])
        assert (out / "parts" / f"{name}.json").exists()
        assert (out / "logs" / f"{name}.log").exists()
    tests = parts["tests"]["figures"]
    assert len(tests["cases"]) >= 5
    if not cuda:
        assert tests["counts"]["skipped"] == len(tests["cases"])
        assert all("needs a CUDA GPU" in v for v in tests["cases"].values())
    for name in ("train", "decode", "mlm"):
        assert parts[name]["figures"]["ratio"] > 0
        assert (out / "parts" / f"{name}.md").exists()
    assert parts["train"]["figures"]["params"]["tfcli"] > 0
    breakdown = parts["train_e2e"]["figures"]["breakdown"]
    assert breakdown["updates"] == parts["train_e2e"]["figures"]["steps"] > 0
    assert breakdown["host_in_update_median_s"] > 0
    assert (breakdown["device"] is not None) == cuda
    md = (out / "gpu.md").read_text()
    assert "smoke mode" in md and "no figure here is a measurement" in md
    for name in PARTS:
        assert f"| {name} |" in md and f"## {name}" in md
