"""Masked-LM pretraining throughput: tfcli vs HF transformers' BertForMaskedLM, side by side.

Both sides train the same shape (BERT-mini by default: 4 layers, d_model 256, 4 heads, d_ff
1024, GELU, post-norm, learned positions, tied output) on the same token blocks (128 tokens of
the benchmark corpus, `<s> sentence </s>` framing, tfcli's tokenizer and encoder), with the same
batch size, precision, AdamW (fused kernel) and gradient clipping.

* HF: the plain loop of the `run_mlm.py` example: DataCollatorForLanguageModeling (special-token
  masks precomputed, as `run_mlm.py` does) -> BertForMaskedLM(**batch).loss -> backward -> clip ->
  step.
* tfcli: MaskedLM + masking + the shared training loop's own update (`Trainer.update`: collate
  and mask the batch, forward over the selected positions only, backward, normalise and clip,
  fused AdamW).

Both sides train on the same batches, after `--warmup` untimed ones, timed in alternating
chunks (HF, tfcli, HF, ...) so that load on a shared machine hits both alike. tokens/s counts
non-padding input tokens; the ratio is reported overall and as the median over chunks.

    python benchmarks/bench_mlm.py                                      # CPU, fp32
    python benchmarks/bench_mlm.py --device cuda --precision bf16 --compile --shape base
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import write_corpus  # noqa: E402

SHAPES = {  # d_model, heads, d_ff, layers
    "smoke": (32, 2, 64, 1),  # benchmarks/gpu.py --smoke: seconds, proves the script
    "mini": (256, 4, 1024, 4),
    "base": (768, 12, 3072, 12),
}


def prepare(work: Path, mb: float, vocab: int) -> tuple[Path, Path]:
    """Corpus -> tfcli WordPiece tokenizer -> encoded text split. Returns (tokenizer, split)."""
    from tfcli.data.encoding import encode_text
    from tfcli.recipe.schema import TokenizerConfig, TokenizerType
    from tfcli.tokenizer.training import train_tokenizer
    from tfcli.tokenizer.vocab import save_tokenizer

    text = write_corpus(work / "corpus.txt", mb)
    cfg = TokenizerConfig(type=TokenizerType.WORDPIECE, vocab_size=vocab)
    tok_path = work / "tokenizer.json"
    save_tokenizer(train_tokenizer([text], cfg, show_progress=False), tok_path)
    encode_text([text], tok_path, work / "train", max_len=0, show_progress=False)
    return tok_path, work / "train"


def recipe_for(args: argparse.Namespace, run_dir: Path):
    from tfcli.recipe.loader import from_dict

    d, h, ff, n = SHAPES[args.shape]
    return from_dict({
        "run_dir": str(run_dir),
        "model": {"d_model": d, "n_heads": h, "d_ff": ff, "encoder_layers": n, "dropout": 0.1,
                  "attention_dropout": 0.1, "activation": "gelu", "norm": "post",
                  "positions": "learned", "max_positions": 512},
        "optim": {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.01, "schedule": "constant",
                  "warmup_steps": 0, "clip_norm": 1.0, "betas": [0.9, 0.999], "eps": 1e-6},
        "train": {"max_steps": 10**9, "log_every": 10**9, "eval_every": 10**9,
                  "label_smoothing": 0.0, "device": args.device, "precision": args.precision,
                  "compile": args.compile, "keep_last": 1},
        "mlm": {"block_size": args.block, "batch_size": args.batch},
    })  # fmt: skip


def tfcli_step(args: argparse.Namespace, split: Path, vocab: int, work: Path):
    """The shared loop's own update (Trainer.update: collate + masking + forward/backward +
    normalise/clip + fused AdamW) on MaskedLM; returns step(i) running batch i."""
    from tfcli.data.split import open_split
    from tfcli.model.build import build_model
    from tfcli.model.config import spec_from_recipe
    from tfcli.training.loop import Trainer
    from tfcli.training.mlm import MLMBatch, MLMObjective

    run_dir = work / "tfcli-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    recipe = recipe_for(args, run_dir)
    objective = MLMObjective(open_split(split), None, recipe.mlm, vocab_size=vocab, seed=1)
    torch.manual_seed(0)
    model = build_model(spec_from_recipe(recipe.model, "mlm", vocab))
    trainer = Trainer(recipe, model, objective, {"kind": "mlm"})
    trainer.prepare()
    b = args.batch
    return lambda i: trainer.update([MLMBatch(0, i, np.arange(i * b, (i + 1) * b))])


def hf_setup(args: argparse.Namespace, tok_path: Path, split: Path, vocab: int):
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    from tfcli.data.split import open_split
    from tfcli.recipe.schema import MLMConfig
    from tfcli.training.mlm import Examples

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tok_path), pad_token="<pad>", unk_token="<unk>", cls_token="<s>",
        sep_token="</s>", bos_token="<s>", eos_token="</s>", mask_token="<mask>",
    )  # fmt: skip
    collator = DataCollatorForLanguageModeling(hf_tok, mlm=True, mlm_probability=0.15)
    blocks = Examples(open_split(split), MLMConfig().packing, args.block, "bench").build(
        np.arange(args.batch * (args.warmup + args.steps))  # the blocks both sides train on
    )
    examples = [
        {"input_ids": row.tolist(), "special_tokens_mask": (row < 5).astype(int).tolist()}
        for row in blocks
    ]
    return collator, examples


def hf_step(args: argparse.Namespace, collator, examples: list[dict], vocab: int):
    """BertForMaskedLM in tfcli's shape and the plain run_mlm-style loop; returns step(i)."""
    from transformers import BertConfig, BertForMaskedLM

    d, h, ff, n = SHAPES[args.shape]
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=n, num_attention_heads=h,
                     intermediate_size=ff, hidden_act="gelu", max_position_embeddings=512,
                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, pad_token_id=0,
                     attn_implementation="sdpa")  # fmt: skip
    device = torch.device(args.device)
    model = BertForMaskedLM(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6,
                            weight_decay=0.01, fused=True)  # fmt: skip
    net = torch.compile(model) if args.compile else model
    amp = args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")

    def step(i: int) -> None:
        rows = examples[i * args.batch : (i + 1) * args.batch]
        batch = {k: v.to(device, non_blocking=True) for k, v in collator(rows).items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = net(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def interleaved(steps: dict, args: argparse.Namespace, tokens: list[int]) -> dict[str, list]:
    """Per-chunk seconds for each side, alternating chunks of `--chunk` steps (HF, tfcli, HF...)
    so that load changes on a shared machine hit both sides alike. Both run batches 0, 1, ...;
    the first `--warmup` are untimed."""

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    for step in steps.values():
        for i in range(args.warmup):
            step(i)
        sync()
    times: dict[str, list] = {name: [] for name in steps}
    for start in range(args.warmup, args.warmup + args.steps, args.chunk):
        batch_ids = range(start, min(start + args.chunk, args.warmup + args.steps))
        for name, step in steps.items():
            t0 = time.perf_counter()
            for i in batch_ids:
                step(i)
            sync()
            times[name].append((sum(tokens[i] for i in batch_ids), time.perf_counter() - t0))
    return times


def hardware(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next(x.split(":", 1)[1].strip() for x in out.splitlines() if "Model name" in x)
    except StopIteration:
        name = platform.processor() or "unknown CPU"
    return f"{name}, {torch.get_num_threads()} torch threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="mini")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--batch", type=int, default=32, help="blocks per batch")
    ap.add_argument("--block", type=int, default=128, help="tokens per block")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    ap.add_argument("--chunk", type=int, default=1, help="steps per alternating chunk (GPU: 10)")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--mb", type=float, default=3.0, help="corpus size")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--out", type=Path, default=None, help="append a markdown result here")
    ap.add_argument("--json", type=Path, default=None, help="write the figures (JSON) here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import os

    os.environ.setdefault("TFCLI_QUIET", "1")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tok_path, split = prepare(work, args.mb, args.vocab)
        from tfcli.tokenizer.vocab import load_tokenizer

        vocab = load_tokenizer(tok_path).get_vocab_size()
        collator, examples = hf_setup(args, tok_path, split, vocab)
        tokens = [
            sum(int(x != 0) for e in examples[i * args.batch : (i + 1) * args.batch]
                for x in e["input_ids"])
            for i in range(args.warmup + args.steps)
        ]  # fmt: skip
        steps = {
            "HF": hf_step(args, collator, examples, vocab),
            "tfcli": tfcli_step(args, split, vocab, work),
        }
        times = interleaved(steps, args, tokens)
    rate = {k: sum(n for n, _ in v) / sum(t for _, t in v) for k, v in times.items()}
    ratios = [(n / t) / (m / u) for (n, t), (m, u) in zip(times["tfcli"], times["HF"], strict=True)]
    print(f"HF {rate['HF']:,.0f} tok/s, tfcli {rate['tfcli']:,.0f} tok/s: "
          f"ratio {rate['tfcli'] / rate['HF']:.2f}x overall, median of {len(ratios)} "
          f"interleaved chunks {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f})")  # fmt: skip
    if args.out:
        write_result(args, vocab, rate, ratios)
    if args.json:
        figures = {
            "hardware": hardware(args.device), "torch": torch.__version__,
            "cuda": torch.version.cuda, "date": datetime.date.today().isoformat(),
            "command": "python benchmarks/bench_mlm.py " + " ".join(sys.argv[1:]),
            "device": args.device, "shape": args.shape, "model": SHAPES[args.shape],
            "precision": args.precision, "compile": args.compile, "batch": args.batch,
            "block": args.block, "vocab": vocab, "steps": args.steps, "warmup": args.warmup,
            "tokens_per_s": rate, "ratio": rate["tfcli"] / rate["HF"],
            "ratio_median_chunk": statistics.median(ratios), "chunk_ratios": ratios,
        }  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")


def write_result(args: argparse.Namespace, vocab: int, rate: dict, ratios: list[float]) -> None:
    cmd = "python benchmarks/bench_mlm.py " + " ".join(sys.argv[1:])
    d, heads, ff, n = SHAPES[args.shape]
    h, o = rate["HF"], rate["tfcli"]
    lines = [
        f"### {args.shape} ({n} layers, d_model {d}, {heads} heads, d_ff {ff}), {args.device}, "
        f"precision {args.precision}{', compiled' if args.compile else ''}",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- hardware: {hardware(args.device)}",
        f"- command: `{cmd}`",
        f"- batch {args.batch} x block {args.block} tokens, vocab {vocab}, torch {torch.__version__}",
        f"- {args.steps} timed steps per side after {args.warmup} warm-up steps, alternating "
        f"chunks of {args.chunk} step(s)",
        "",
        "| HF BertForMaskedLM + DataCollatorForLanguageModeling | tfcli (MaskedLM + masking + "
        "loop update) | ratio overall | median chunk ratio (range) |",
        "|---|---|---|---|",
        f"| {h:,.0f} tok/s | {o:,.0f} tok/s | **{o / h:.2f}x** | {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}-{max(ratios):.2f}) |",
        "",
    ]
    with open(args.out, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
