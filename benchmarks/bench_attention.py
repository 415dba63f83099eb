"""Encoder self-attention at long inputs: full vs the local window vs Linformer, side by side.

One encoder stack (tfcli's TransformerStack, as build_model makes it for `pretrain-mlm`) runs
forward + backward on one random sequence per length (512 .. 8192 by default) for each variant:

* full:       model.attention: full (the paper; SDPA picks its kernel)
* window:     model.window: W (each token sees W neighbours each side; a mask over full scores)
* linformer:  model.attention: linformer, model.linformer_k: K (Wang et al. 2020)

Each point runs in a fresh process, so its peak memory is its own: on CPU the peak resident set
(getrusage) minus the resident set before the first forward; on CUDA max_memory_allocated minus
the memory allocated before it. Time is the median of --repeats timed passes after one warm-up.
A variant stops at the first length that runs out of memory or exceeds --max-seconds per pass,
and the table says so. Printed: a markdown table (also written to --out), and for each variant
how time and memory grow per doubling of the length (x2 = linear, x4 = quadratic).

    python benchmarks/bench_attention.py                                  # CPU, d_model 64
    python benchmarks/bench_attention.py --device cuda --d-model 256 --heads 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("full", "window", "linformer")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def one_point(args: argparse.Namespace) -> dict:
    """Runs in the child: build, warm up, time; returns seconds and peak MB."""
    import torch

    from tfcli.model.build import build_model
    from tfcli.model.config import ModelSpec

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    fields = dict(attention="full", window=0)
    if args.variant == "window":
        fields["window"] = args.window
    if args.variant == "linformer":
        fields.update(attention="linformer", linformer_k=args.linformer_k)
    spec = ModelSpec(
        "mlm", 100, 100, d_model=args.d_model, n_heads=args.heads, d_ff=4 * args.d_model,
        encoder_layers=args.layers, decoder_layers=0, dropout=0.0,
        max_positions=max(args.length, args.linformer_k), **fields,
    )  # fmt: skip
    encoder = build_model(spec).encoder.to(args.device).train()
    x = torch.randn(1, args.length, args.d_model, device=args.device, requires_grad=True)
    pad = torch.ones(1, 1, 1, args.length, dtype=torch.bool, device=args.device)
    cuda = args.device.startswith("cuda")

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        encoder(x, pad).square().mean().backward()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_mb()
    times = [step() for _ in range(args.repeats + 1)][1:]
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"seconds": statistics.median(times), "peak_mb": peak}


def run_point(args: argparse.Namespace, variant: str, length: int) -> dict:
    cmd = [sys.executable, __file__, "--one", variant, "--length", str(length)]
    for k in ("d_model", "heads", "layers", "window", "linformer_k", "repeats", "threads"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    cmd += ["--device", args.device]
    limit = args.max_seconds * (args.repeats + 1) + 60
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"error": "time limit"}
    if out.returncode != 0:
        oom = "out of memory" in out.stderr.lower() or out.returncode < 0
        return {"error": "out of memory" if oom else out.stderr.strip().splitlines()[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def growth(points: dict[int, dict], key: str) -> str:
    """Mean factor per doubling of the length between the first and last measured lengths."""
    done = sorted(n for n, p in points.items() if key in p)
    if len(done) < 2:
        return "-"
    a, b = done[0], done[-1]
    va, vb = points[a][key], points[b][key]
    if va <= 0 or vb <= 0:
        return "-"
    return f"x{(vb / va) ** (1 / math.log2(b / a)):.1f}"


def table(args: argparse.Namespace, results: dict[str, dict[int, dict]]) -> str:
    head = "| length | " + " | ".join(f"{v} s | {v} MB" for v in VARIANTS) + " |"
    rows = [head, "|---" * (1 + 2 * len(VARIANTS)) + "|"]
    for n in args.lengths:
        cells = []
        for v in VARIANTS:
            p = results[v].get(n)
            if p is None:
                cells += ["skipped", "-"]
            elif "error" in p:
                cells += [p["error"], "-"]
            else:
                cells += [f"{p['seconds']:.3f}", f"{p['peak_mb']:.0f}"]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    rows.append(
        "| growth per doubling | "
        + " | ".join(f"{growth(results[v], 'seconds')} | {growth(results[v], 'peak_mb')}" for v in VARIANTS)
        + " |"
    )  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--window", type=int, default=64, help="model.window of the window variant")
    ap.add_argument("--linformer-k", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="per pass; stop the variant")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results/attention.md")
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        args.variant = args.one
        print(json.dumps(one_point(args)))
        return
    results: dict[str, dict[int, dict]] = {v: {} for v in VARIANTS}
    for n in args.lengths:  # variants alternate at each length: load hits all alike
        for v in VARIANTS:
            if any("error" in p or p["seconds"] > args.max_seconds for p in results[v].values()):
                continue  # stopped at a shorter length
            results[v][n] = run_point(args, v, n)
            print(f"{v:9s} {n:6d} {results[v][n]}", file=sys.stderr, flush=True)
    command = " ".join(["python benchmarks/bench_attention.py", *sys.argv[1:]])
    md = "\n".join(
        [
            "# Encoder self-attention: full vs window vs Linformer (forward + backward)",
            "",
            f"`{command}` on {args.device} ({_cpu_name()}, {args.threads} threads; "
            f"{os.cpu_count()} cores visible), {datetime.date.today()}: one sequence, d_model "
            f"{args.d_model}, {args.heads} heads, {args.layers} layer(s), window {args.window}, "
            f"linformer_k {args.linformer_k}; median of {args.repeats} passes; peak MB above "
            "the model's own footprint.",
            "",
            table(args, results),
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(md)
    print(md)


if __name__ == "__main__":
    main()
