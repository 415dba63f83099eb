"""Streaming decode: time and peak memory of `tfcli decode` as the input grows 10x.

`tfcli decode` reads its input in chunks (--chunk-size lines), decodes each and writes its
output before reading on, so time should grow linearly with the number of lines and peak
memory should not grow at all. This times `tfcli decode -i N_LINES -o OUT` in a fresh process
for each size (a tiny random model, greedy, short outputs: the cost is the streaming, not the
model) and prints seconds per 1,000 lines and the peak RSS (ru_maxrss of the child).

    python benchmarks/bench_stream.py                    # 20k and 200k lines
    python benchmarks/bench_stream.py --sizes 5000 50000 --write benchmarks/results/stream.md
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = "the a cat dog sat on mat ran far big small red blue one two three four five".split()


def make_checkpoint(root: Path) -> Path:
    import torch

    from tfcli.checkpoints import files as ckpt
    from tfcli.model.build import build_model
    from tfcli.model.config import ModelSpec
    from tfcli.recipe import loader
    from tfcli.recipe.schema import TokenizerConfig
    from tfcli.run_dir import RunDir
    from tfcli.tokenizer.training import train_tokenizer

    text = root / "corpus.txt"
    write_lines(text, 2000, 0)
    tok = train_tokenizer([text], TokenizerConfig(vocab_size=120, min_frequency=1), False)
    torch.manual_seed(0)
    v = tok.get_vocab_size()
    spec = ModelSpec(
        kind="seq2seq", src_vocab_size=v, tgt_vocab_size=v, d_model=32, n_heads=2, d_ff=64,
        encoder_layers=1, decoder_layers=1, dropout=0.0, max_positions=128,
    )  # fmt: skip
    path = RunDir(root / "run").best
    meta = {
        "kind": "seq2seq",
        "model": spec.to_dict(),
        "recipe": loader.to_dict(loader.from_dict({})),
        "tokenizer": {"joint": True, "src": tok.to_str(), "tgt": tok.to_str()},
        "step": 1,
    }
    ckpt.save_checkpoint(path, build_model(spec), meta)
    return path


def write_lines(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n):
            f.write(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n")


def run_decode(checkpoint: Path, src: Path, out: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of one `tfcli decode` in its own process."""
    argv = [sys.executable, "-m", "tfcli", "decode", str(checkpoint), "-i", str(src),
            "-o", str(out), "--mode", "greedy", "--max-len-a", "0", "--max-len-b", "3",
            "--threads", "1"]  # fmt: skip
    code = (
        "import resource, subprocess, sys; "
        "p = subprocess.run(sys.argv[1:], capture_output=True); "
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    rc, rss_kb = done.stdout.split()
    if rc != "0":
        raise SystemExit(f"decode failed: {done.stderr}")
    return seconds, int(rss_kb) // 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--write", type=Path, help="write the markdown table to this file")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = make_checkpoint(root)
        for n in args.sizes:
            src = root / f"in-{n}.txt"
            write_lines(src, n, 1)
            seconds, rss = run_decode(checkpoint, src, root / f"out-{n}.txt")
            lines_out = sum(1 for _ in open(root / f"out-{n}.txt", encoding="utf-8"))
            assert lines_out == n, (lines_out, n)
            rows.append((n, seconds, rss))
            print(f"{n:>8,} lines: {seconds:7.1f} s ({1000 * seconds / n:.2f} s per 1k), "
                  f"peak RSS {rss} MiB", flush=True)  # fmt: skip
    first, last = rows[0], rows[-1]
    growth = last[0] / first[0]
    table = [
        "| lines | wall s | s per 1k lines | peak RSS MiB |",
        "|---|---|---|---|",
        *[f"| {n:,} | {s:.1f} | {1000 * s / n:.2f} | {r} |" for n, s, r in rows],
        "",
        f"{growth:.0f}x the lines: {last[1] / first[1]:.2f}x the time "
        f"(linear = {growth:.0f}x), {last[2] / first[2]:.2f}x the peak memory (flat = 1.00x).",
    ]
    print("\n".join(table))
    if args.write:
        hw = f"{resource.getpagesize()} B pages, Python {sys.version.split()[0]}"
        args.write.write_text(
            "# Streaming decode (benchmarks/bench_stream.py)\n\n"
            f"`python benchmarks/bench_stream.py --sizes {' '.join(map(str, args.sizes))}`, "
            f"{time.strftime('%Y-%m-%d')}, {hw}.\n\n" + "\n".join(table) + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
