"""Model core vs HF MarianMTModel, side by side in one process.

1. Training throughput: the same architecture (post-norm, relu, sinusoidal positions, shared
   embeddings, scaled token embeddings) built by tfcli and by transformers.MarianMTModel; one
   step = forward + label-smoothed CE (computed identically for both) + backward + AdamW step.
   The two models alternate, round after round, so load on a shared machine hits both alike.
2. Incremental decoding: one greedy-style step against tfcli's KV cache (preallocated buffer,
   the shipped strategy) vs the same model with `torch.cat` appends, vs Marian with its cache.

    python benchmarks/model_core.py --size small                       # CPU
    python benchmarks/model_core.py --size base --device cuda --bf16 --compile   # GPU

Prints tokens/s and ratios (tfcli / marian; > 1 means tfcli is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tfcli.model.build import build_model
from tfcli.model.cache import LayerKV
from tfcli.model.config import ModelSpec

SIZES = {  # d_model, heads, d_ff, layers (each side)
    "small": (256, 4, 1024, 3),
    "base": (512, 8, 2048, 6),  # the paper's base model
}


def make_batch(batch: int, length: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Length-bucketed batch as a token-budget sampler yields it: lengths within ~20%."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(int(length * 0.8), length + 1, (batch,), generator=g)
    src = torch.randint(5, vocab, (batch, length), generator=g)
    tgt = torch.randint(5, vocab, (batch, length + 1), generator=g)
    pos = torch.arange(length + 1)[None, :]
    src[pos[:, :length] >= lengths[:, None]] = 0
    tgt[pos >= lengths[:, None] + 1] = 0
    return src, tgt


def build_pair(size: str, vocab: int, device: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    from transformers import MarianConfig, MarianMTModel

    d, h, ff, n = SIZES[size]
    torch.manual_seed(0)
    spec = ModelSpec("seq2seq", vocab, vocab, d_model=d, n_heads=h, d_ff=ff, encoder_layers=n,
                     decoder_layers=n, dropout=0.1, max_positions=512)  # fmt: skip
    ours = build_model(spec).to(device)
    cfg = MarianConfig(vocab_size=vocab, decoder_vocab_size=vocab, d_model=d,
                       encoder_layers=n, decoder_layers=n, encoder_attention_heads=h,
                       decoder_attention_heads=h, encoder_ffn_dim=ff, decoder_ffn_dim=ff,
                       activation_function="relu", dropout=0.1, attention_dropout=0.0,
                       activation_dropout=0.0, scale_embedding=True, pad_token_id=0,
                       decoder_start_token_id=2, eos_token_id=3, max_position_embeddings=512,
                       share_encoder_decoder_embeddings=True)  # fmt: skip
    theirs = MarianMTModel(cfg).to(device)
    return ours, theirs


def train_step_fn(model, is_ours: bool, opt, src, tgt, bf16: bool):
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]

    def step() -> None:
        with torch.autocast(src.device.type, dtype=torch.bfloat16, enabled=bf16):
            if is_ours:
                logits = model(src, tgt_in)
            else:
                logits = model(input_ids=src, attention_mask=src != 0, decoder_input_ids=tgt_in,
                               decoder_attention_mask=tgt_in != 0, use_cache=False).logits  # fmt: skip
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt_out.flatten(),
                                   ignore_index=0, label_smoothing=0.1, reduction="sum")  # fmt: skip
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench_training(args) -> None:
    ours, theirs = build_pair(args.size, args.vocab, args.device)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_theirs = sum(p.numel() for p in theirs.parameters())
    print(f"parameters: tfcli {n_ours:,}  marian {n_theirs:,}")
    src, tgt = (t.to(args.device) for t in make_batch(args.batch, args.length, args.vocab, 0))
    tokens = int((src != 0).sum() + (tgt[:, 1:] != 0).sum())
    steps = {}
    for name, model, is_ours in (("tfcli", ours, True), ("marian", theirs, False)):
        model.train()
        if args.compile:
            model = torch.compile(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        steps[name] = train_step_fn(model, is_ours, opt, src, tgt, args.bf16)
        for _ in range(args.warmup):
            steps[name]()
    times: dict[str, list[float]] = {"tfcli": [], "marian": []}
    for _ in range(args.rounds):
        for name in times:
            times[name].append(timed(steps[name], args.device))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"train {k:7s} {v * 1000:8.1f} ms/step  {tokens / v:10.0f} tok/s")
    print(f"train speedup tfcli/marian: {med['marian'] / med['tfcli']:.2f}x  "
          f"(batch {args.batch} x ~{args.length}, {tokens} non-pad tokens/step)")  # fmt: skip


def _cat_append(self: LayerKV, k: torch.Tensor, v: torch.Tensor, start: int):
    """The alternative strategy, for comparison only: grow by concatenation every step."""
    if self.self_k is None or start == 0:
        self.self_k, self.self_v = k, v
    else:
        self.self_k = torch.cat([self.self_k, k], 2)
        self.self_v = torch.cat([self.self_v, v], 2)
    return self.self_k, self.self_v


@torch.no_grad()
def bench_decoding(args) -> None:
    ours, theirs = build_pair(args.size, args.vocab, args.device)
    ours.eval(), theirs.eval()
    src, tgt = (t.to(args.device) for t in make_batch(args.batch, args.length, args.vocab, 1))
    steps = args.decode_steps
    tokens = torch.randint(5, args.vocab, (args.batch, steps), device=args.device)

    def run_ours() -> None:
        memory, src_mask = ours.encode(src)
        cache = ours.new_cache()
        for i in range(steps):
            ours.decode(tokens[:, i : i + 1], memory, src_mask, cache)

    def run_theirs() -> None:
        enc = theirs.get_encoder()(input_ids=src, attention_mask=src != 0)
        past = None
        for i in range(steps):
            out = theirs(encoder_outputs=enc, attention_mask=src != 0, past_key_values=past,
                         decoder_input_ids=tokens[:, i : i + 1], use_cache=True)  # fmt: skip
            past = out.past_key_values

    prealloc = LayerKV.append
    results: dict[str, list[float]] = {"tfcli": [], "tfcli-cat": [], "marian": []}
    for name, fn in (("tfcli", run_ours), ("tfcli-cat", run_ours), ("marian", run_theirs)):
        LayerKV.append = _cat_append if name == "tfcli-cat" else prealloc  # type: ignore[method-assign]
        fn()  # warm-up
    for _ in range(args.rounds):
        for name, fn in (("tfcli", run_ours), ("tfcli-cat", run_ours), ("marian", run_theirs)):
            LayerKV.append = _cat_append if name == "tfcli-cat" else prealloc  # type: ignore[method-assign]
            results[name].append(timed(fn, args.device))
    LayerKV.append = prealloc  # type: ignore[method-assign]
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in med.items():
        print(
            f"decode {k:9s} {v * 1000 / steps:7.2f} ms/step ({args.batch} sentences, {steps} steps)"
        )
    print(f"decode speedup tfcli/marian: {med['marian'] / med['tfcli']:.2f}x; "
          f"preallocated vs cat: {med['tfcli-cat'] / med['tfcli']:.2f}x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=32, help="longest sentence in the batch")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--decode-steps", type=int, default=48)
    ap.add_argument("--only", choices=["train", "decode"], default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"size {args.size}, bf16 {args.bf16}, compile {args.compile}")  # fmt: skip
    if args.only in (None, "train"):
        bench_training(args)
    if args.only in (None, "decode"):
        bench_decoding(args)


if __name__ == "__main__":
    main()
