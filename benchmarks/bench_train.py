"""Training throughput: tfcli's model + training-loop step vs HF transformers' MarianMTModel with a
plain PyTorch loop, side by side in one run, on the same batches.

Both sides train the same architecture (post-norm, ReLU, sinusoidal positions, tied embeddings,
scaled token embeddings: MarianConfig is set to tfcli's shape) on identical token-budget
batches (tfcli's TokenBudgetSampler over synthetic pairs with log-normal lengths), with the same
label-smoothed loss normalised by target tokens, gradient clipping at 1.0, Adam (0.9, 0.98)
with the fused kernel on both sides, the inverse-sqrt schedule, dropout 0.1, and the same
precision (fp32 on CPU, bf16 autocast on CUDA). The tfcli side is `Trainer.update`, the exact
step `tfcli train` runs (host transfers, loss, accumulation bookkeeping, clipping, skip flag).
Each side runs in its own process (process-wide settings stay apart); the parent alternates them
round by round, one at a time, so that load on a shared machine hits both alike.

    python benchmarks/bench_train.py                                   # CPU, 2 threads, tiny shape
    python benchmarks/bench_train.py --device cuda --shape base --compile --peak-tflops 989

Prints non-pad (source + target) tokens/s for both, the ratio, and a model-FLOPs-utilisation
estimate (6 * parameters * tokens / time; a rough figure: it ignores attention FLOPs and that
the encoder only sees source tokens) against the peak you pass with --peak-tflops.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SHAPES = {  # d_model, heads, d_ff, layers per side, vocab, max_tokens per batch
    "smoke": (32, 2, 64, 1, 500, 512),  # benchmarks/gpu.py --smoke: seconds, proves the script
    "tiny": (256, 4, 1024, 3, 8000, 2048),  # CPU: a couple of minutes on 2 cores
    "small": (512, 4, 1024, 6, 10000, 4096),  # fairseq transformer_iwslt_de_en
    "base": (512, 8, 2048, 6, 37000, 12288),  # the paper's base model
}


def synthetic_pairs(n: int, vocab: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Subword id sequences with WMT-like lengths: log-normal, median ~22, 1..150 tokens."""
    rng = np.random.default_rng(seed)
    src_len = np.clip(rng.lognormal(np.log(22), 0.6, n).astype(int), 1, 150)
    tgt_len = np.clip((src_len * rng.uniform(0.8, 1.25, n)).astype(int), 1, 150)
    src = [rng.integers(5, vocab, k) for k in src_len]
    tgt = [rng.integers(5, vocab, k) for k in tgt_len]
    return src, tgt


def make_batches(args, vocab: int, max_tokens: int) -> list[dict]:
    """Padded CPU batches as tfcli's collate builds them: src `ids </s>`, tgt `<s> ids </s>`."""
    from tfcli.data.split import TokenBudgetSampler

    src, tgt = synthetic_pairs(args.pairs, vocab, args.seed)
    costs = np.maximum([len(s) + 1 for s in src], [len(t) + 2 for t in tgt])
    out = []
    for idx in TokenBudgetSampler(costs, max_tokens, args.seed).epoch_batches(0):
        s = np.zeros((len(idx), max(len(src[i]) for i in idx) + 1), dtype=np.int64)
        t = np.zeros((len(idx), max(len(tgt[i]) for i in idx) + 2), dtype=np.int64)
        for row, i in enumerate(idx):
            s[row, : len(src[i]) + 1] = [*src[i], 3]
            t[row, : len(tgt[i]) + 2] = [2, *tgt[i], 3]
        b = {"src": torch.from_numpy(s), "tgt": torch.from_numpy(t)}
        b["tokens"] = int((b["tgt"][:, 1:] != 0).sum())
        b["throughput"] = b["tokens"] + int((b["src"] != 0).sum())
        out.append(b)
        if len(out) >= args.warmup + args.rounds * args.steps:
            break
    return out


def tfcli_side(args, batches: list[dict], run_dir: Path):
    """A Trainer on an in-memory objective that reuses Seq2SeqObjective.loss; returns step(i)."""
    from tfcli.model.build import build_model
    from tfcli.model.config import spec_from_recipe
    from tfcli.recipe.loader import from_dict
    from tfcli.training.loop import Trainer
    from tfcli.training.seq2seq import Seq2SeqObjective, with_targets

    d, h, ff, n, vocab, max_tokens = SHAPES[args.shape]

    class InMemory(Seq2SeqObjective):
        def __init__(self) -> None:  # the loss and its smoothing are Seq2SeqObjective's own
            self.eps = 0.1
            self.exposure = self.guided = None  # the paper's model: teacher forcing, no guide
            self.step = 0

        def collate(self, i: int) -> dict:  # the host-side part of Seq2SeqObjective.collate
            return with_targets({"src": batches[i]["src"], "tgt": batches[i]["tgt"]})

    recipe = from_dict({
        "run_dir": str(run_dir),
        "model": {"d_model": d, "n_heads": h, "d_ff": ff, "encoder_layers": n,
                  "decoder_layers": n, "dropout": 0.1, "max_positions": 512},
        "optim": {"lr": 7e-4, "warmup_steps": 4000, "clip_norm": 1.0},
        "train": {"device": args.device, "compile": args.compile, "max_tokens": max_tokens,
                  "precision": "bf16" if args.bf16 else "fp32"},
    })  # fmt: skip
    torch.manual_seed(0)
    model = build_model(spec_from_recipe(recipe.model, "seq2seq", vocab, vocab))
    trainer = Trainer(recipe, model, InMemory(), {})
    trainer.prepare()
    return model, lambda i: trainer.update([i])


def marian_side(args, batches: list[dict]):
    """MarianMTModel in tfcli's shape and the plain loop a PyTorch user writes for it."""
    from transformers import MarianConfig, MarianMTModel

    d, h, ff, n, vocab, _ = SHAPES[args.shape]
    cfg = MarianConfig(vocab_size=vocab, decoder_vocab_size=vocab, d_model=d, encoder_layers=n,
                       decoder_layers=n, encoder_attention_heads=h, decoder_attention_heads=h,
                       encoder_ffn_dim=ff, decoder_ffn_dim=ff, activation_function="relu",
                       dropout=0.1, attention_dropout=0.0, activation_dropout=0.0,
                       scale_embedding=True, pad_token_id=0, eos_token_id=3,
                       decoder_start_token_id=2, max_position_embeddings=512,
                       share_encoder_decoder_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    model = MarianMTModel(cfg).to(args.device).train()
    net = torch.compile(model) if args.compile else model
    opt = torch.optim.Adam(model.parameters(), lr=7e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / 4000, (4000 / (s + 1)) ** 0.5)
    )
    dev = torch.device(args.device)

    def step(i: int) -> None:
        b = batches[i]
        src = b["src"].to(dev, non_blocking=True)
        tgt = b["tgt"].to(dev, non_blocking=True)
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = net(input_ids=src, attention_mask=src != 0, decoder_input_ids=tgt_in,
                         decoder_attention_mask=tgt_in != 0, use_cache=False).logits  # fmt: skip
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=0,
                               label_smoothing=0.1, reduction="sum") / b["tokens"]  # fmt: skip
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)

    return model, step


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def side_worker(name: str, args, conn) -> None:
    """One side in its own process: build it, warm up, then time the step ranges it is sent.

    Separate processes keep process-wide state apart: tfcli's Trainer tunes glibc's allocator
    on CPU (tfcli/allocator.py), which a plain PyTorch script does not get.
    """
    torch.set_num_threads(args.threads)
    d, h, ff, n, vocab, max_tokens = SHAPES[args.shape]
    batches = make_batches(args, vocab, max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        model, step = (
            tfcli_side(args, batches, Path(tmp)) if name == "tfcli" else marian_side(args, batches)
        )
        for i in range(args.warmup):  # allocator, kernels, compilation
            step(i)
        sync(args.device)
        conn.send(sum(p.numel() for p in model.parameters()))
        while (job := conn.recv()) is not None:
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(*job):
                step(i)
            sync(args.device)
            conn.send((time.perf_counter() - t0, time.process_time() - c0))


def run(args) -> dict:
    import multiprocessing as mp

    d, h, ff, n, vocab, max_tokens = SHAPES[args.shape]
    batches = make_batches(args, vocab, max_tokens)
    need = args.warmup + args.rounds * args.steps
    if len(batches) < need:
        raise SystemExit(f"only {len(batches)} batches; raise --pairs (need {need})")
    ctx = mp.get_context("spawn")
    conns, procs = {}, []
    for name in ("tfcli", "marian"):
        conns[name], child = ctx.Pipe()
        procs.append(ctx.Process(target=side_worker, args=(name, args, child), daemon=True))
        procs[-1].start()
    params = {k: c.recv() for k, c in conns.items()}  # both built and warmed up
    rates: dict[str, list[float]] = {k: [] for k in conns}
    cpu_rates: dict[str, list[float]] = {k: [] for k in conns}
    for r in range(args.rounds):
        chunk = (args.warmup + r * args.steps, args.warmup + (r + 1) * args.steps)
        tokens = sum(batches[i]["throughput"] for i in range(*chunk))
        order = list(conns) if r % 2 == 0 else list(conns)[::-1]
        for name in order:  # one side at a time: the other waits in recv()
            conns[name].send(chunk)
            wall, cpu = conns[name].recv()
            rates[name].append(tokens / wall)
            cpu_rates[name].append(tokens / cpu)
    for c in conns.values():
        c.send(None)
    for p in procs:
        p.join()
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu = {k: statistics.median(v) for k, v in cpu_rates.items()}
    return {"params": params, "rates": rates, "median": med, "cpu": cpu, "batches": batches[:need]}


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if "Model name" in line
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def summary(args, res: dict) -> dict:
    """The figures of a run as plain data (what --json writes and the markdown shows)."""
    med, params = res["median"], res["params"]
    # Both sides run back to back within a round, so the per-round ratio cancels most of the
    # load drift of a shared machine; its median is the headline figure.
    paired = [a / b for a, b in zip(res["rates"]["tfcli"], res["rates"]["marian"], strict=True)]
    mfu = None
    if args.peak_tflops:
        mfu = {k: 6 * params[k] * med[k] / (args.peak_tflops * 1e12) for k in params}
    return {
        "hardware": (
            torch.cuda.get_device_name()
            if args.device == "cuda"
            else f"{cpu_name()}, {args.threads} threads"
        ),
        "torch": torch.__version__, "cuda": torch.version.cuda, "date": str(datetime.date.today()),
        "command": f"python benchmarks/bench_train.py {' '.join(args.argv)}".rstrip(),
        "device": args.device, "shape": args.shape, "model": SHAPES[args.shape][:5],
        "max_tokens": SHAPES[args.shape][5], "bf16": args.bf16, "compile": args.compile,
        "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup,
        "mean_tokens_per_batch": statistics.mean(x["throughput"] for x in res["batches"]),
        "params": params, "tokens_per_s": med, "per_round": res["rates"],
        "tokens_per_cpu_s": res["cpu"], "peak_tflops": args.peak_tflops or None, "mfu": mfu,
        "ratio": statistics.median(paired), "rounds_won": sum(r > 1 for r in paired),
        "ratio_of_medians": med["tfcli"] / med["marian"],
        "ratio_cpu": res["cpu"]["tfcli"] / res["cpu"]["marian"],
    }  # fmt: skip


def report(s: dict) -> str:
    lines = [
        f"hardware: {s['hardware']}; torch {s['torch']}; {s['date']}",
        f"command: {s['command']}",
        f"shape {s['shape']} {tuple(s['model'][:4])} vocab {s['model'][4]}, "
        f"max_tokens {s['max_tokens']}, ~{s['mean_tokens_per_batch']:.0f} non-pad tokens/batch, "
        f"{'bf16' if s['bf16'] else 'fp32'}, compile {s['compile']}, "
        f"{s['rounds']} rounds x {s['steps']} steps after {s['warmup']} warm-up steps",
        "",
        "| side | parameters | tokens/s (median) | per round | tokens per CPU-second | MFU |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("tfcli", "marian"):
        mfu = f"{s['mfu'][name]:.1%}" if s["mfu"] else "-"
        rounds = ", ".join(f"{x:.0f}" for x in s["per_round"][name])
        lines.append(
            f"| {name} | {s['params'][name]:,} | {s['tokens_per_s'][name]:,.0f} | {rounds} | "
            f"{s['tokens_per_cpu_s'][name]:,.0f} | {mfu} |"
        )
    lines.append("")
    lines.append(
        f"ratio tfcli / marian: {s['ratio']:.2f}x (median of per-round ratios; "
        f"{s['rounds_won']}/{s['rounds']} rounds favour tfcli); ratio of medians "
        f"{s['ratio_of_medians']:.2f}x wall-clock, {s['ratio_cpu']:.2f}x per CPU-second"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument(
        "--shape", choices=sorted(SHAPES), default=None, help="default tiny (cpu), base (cuda)"
    )
    ap.add_argument("--steps", type=int, default=8, help="timed steps per side per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=20000, help="synthetic sentence pairs")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    ap.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on for cuda"
    )
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument(
        "--peak-tflops", type=float, default=0.0, help="device peak, for the MFU estimate"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--write", type=Path, default=None, help="append the result (markdown) to this file"
    )
    ap.add_argument("--json", type=Path, default=None, help="write the figures (JSON) here")
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.shape = args.shape or ("base" if args.device == "cuda" else "tiny")
    args.bf16 = args.device == "cuda" if args.bf16 is None else args.bf16
    torch.set_num_threads(args.threads)
    figures = summary(args, run(args))
    text = report(figures)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    if args.write:
        with open(args.write, "a", encoding="utf-8") as f:
            f.write(f"\n### {args.shape} on {args.device}\n\n{text}\n")


if __name__ == "__main__":
    main()
