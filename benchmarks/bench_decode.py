"""Beam search: tfcli vs HF transformers `generate()`, same weights, same batches, one process.

The tfcli model's weights are copied exactly into a `MarianMTModel` (same architecture: post-norm,
relu, scaled shared embeddings, sinusoidal positions, tied output), so both searches score the
same hypotheses; the script checks that the logits agree, then decodes the same length-sorted,
token-budget batches with beam 5 through both, alternating rounds so that load on a shared machine
hits both alike. It prints sentences/s and generated tokens/s (best hypothesis, </s> included)
for each, their ratio, and how often the two best hypotheses are identical (BLEU of each against
the references too, with --checkpoint and --reference).

    python benchmarks/bench_decode.py                          # random "small" model, CPU
    python benchmarks/bench_decode.py --size base --sentences 200
    python benchmarks/bench_decode.py --checkpoint runs/demo-tiny --input demo/test.src \\
        --reference demo/test.tgt                              # a trained model, real text
    python benchmarks/bench_decode.py --device cuda --size base    # GPU: bf16 for both

Both sides stop a sentence once it holds `beam` finished hypotheses (HF `early_stopping=True`,
fairseq's rule), rank them by score / length**1.0, never emit <pad> <s> <mask>, and stop at the
same maximum length. On CUDA both run in bf16 (tfcli: autocast; HF: the model cast to bf16, its
usual fast path). Results go to benchmarks/results/decode.md (--results).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from tfcli.decoding.beam import beam_search
from tfcli.decoding.translate import pad_batch, token_batches
from tfcli.tokenizer.vocab import BOS, EOS, PAD

SIZES = {  # d_model, heads, d_ff, layers per side
    "tiny": (128, 4, 512, 2),
    "small": (256, 4, 1024, 3),
    "base": (512, 8, 2048, 6),
}


# --- models ------------------------------------------------------------------------------------


def random_model(size: str, vocab: int, eos_bias: float):
    """A random tfcli model whose sentences end at varied lengths.

    Random weights never choose </s> on their own; adding `eos_bias * e_eos / |e_eos|^2` to the
    last decoder LayerNorm's bias raises the </s> logit by `eos_bias` (a real weight change, so
    the Marian copy inherits it exactly).
    """
    from tfcli.model.build import build_model
    from tfcli.model.config import ModelSpec

    d, h, ff, n = SIZES[size]
    torch.manual_seed(0)
    spec = ModelSpec("seq2seq", vocab, vocab, d_model=d, n_heads=h, d_ff=ff, encoder_layers=n,
                     decoder_layers=n, dropout=0.0, max_positions=512)  # fmt: skip
    model = build_model(spec).eval()
    with torch.no_grad():
        e = model.tgt_embed.tokens.weight[EOS]
        model.decoder.layers[-1].feed_forward_norm.bias += eos_bias * e / e.dot(e)
    return model


def to_marian(model):
    """The HF model computing exactly `model` (tfcli.export.hf: MarianMTModel for post-norm,
    Pegasus for pre-norm; the product's own mapping, so this benchmark checks it too)."""
    from tfcli.errors import CheckpointError
    from tfcli.export.hf import to_hf

    try:
        return to_hf(model)
    except CheckpointError as e:
        raise SystemExit(f"bench_decode: {e}") from None


def check_same_logits(model, hf, src: torch.Tensor) -> float:
    """Max |logit difference| on one teacher-forced batch (fp32)."""
    tgt_in = torch.full((src.size(0), 6), 7, dtype=torch.long)
    tgt_in[:, 0] = BOS
    with torch.inference_mode():
        ours = model(src, tgt_in)
        theirs = hf(input_ids=src, attention_mask=src != PAD, decoder_input_ids=tgt_in).logits
    return (ours - theirs).abs().max().item()


# --- data --------------------------------------------------------------------------------------


def random_sources(n: int, vocab: int, seed: int) -> list[list[int]]:
    """Source ids with a sentence-like length spread (median ~18 subwords, 3..80)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = int(min(80, max(3, rng.lognormvariate(2.9, 0.5))))
        out.append([rng.randrange(5, vocab) for _ in range(length)] + [EOS])
    return out


def checkpoint_sources(args):
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints.steps import resolve_checkpoint
    from tfcli.textio import iter_lines

    path = resolve_checkpoint(Path(args.checkpoint))
    model, meta = ckpt.load_model(path)
    toks = ckpt.load_tokenizers(meta)
    lines = list(iter_lines(Path(args.input)))[: args.sentences]
    sources = [
        [*e.ids[: model.spec.max_positions - 1], EOS] for e in toks["src"].encode_batch(lines)
    ]
    refs = list(iter_lines(Path(args.reference)))[: len(lines)] if args.reference else None
    return model, sources, toks["tgt"], refs, str(path)


# --- the two searches --------------------------------------------------------------------------


def run_tfcli(model, batches: list[torch.Tensor], args) -> list[list[int]]:
    out = []
    for src in batches:
        hyps = beam_search(model, src, beam_size=args.beam, length_penalty=1.0, max_len_a=0,
                           max_len_b=args.max_len, min_len=1, nbest=1)  # fmt: skip
        out.extend(h[0].tokens for h in hyps)
    return out


def run_hf(hf, batches: list[torch.Tensor], args) -> list[list[int]]:
    from tfcli.export.hf import generate_kwargs, generated_ids

    out = []
    with torch.inference_mode():
        for src in batches:
            seqs = hf.generate(
                input_ids=src,
                attention_mask=src != PAD,
                **generate_kwargs(args.beam, 1.0, args.max_len),
            )
            out.extend(generated_ids(seqs))
    return out


def timed(fn, device: torch.device) -> tuple[float, list[list[int]]]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, result


# --- report ------------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def agreement(a: list[list[int]], b: list[list[int]]) -> tuple[float, float]:
    """(share of identical outputs, BLEU of a against b as id strings)."""
    from tfcli.decoding.metrics import bleu_chrf

    same = sum(x == y for x, y in zip(a, b, strict=True)) / max(1, len(a))
    as_text = [" ".join(map(str, x)) for x in a], [" ".join(map(str, y)) for y in b]
    return same, bleu_chrf(*as_text)["bleu"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", choices=sorted(SIZES), default="small", help="random model shape")
    p.add_argument("--vocab", type=int, default=8000, help="random model vocabulary")
    p.add_argument("--eos-bias", type=float, default=6.0, help="random model: raise the </s> logit")
    p.add_argument(
        "--checkpoint", help="a trained tfcli checkpoint or run dir instead of random weights"
    )
    p.add_argument("--input", help="source sentences (with --checkpoint)")
    p.add_argument("--reference", help="references for BLEU (with --checkpoint)")
    p.add_argument("--sentences", type=int, default=300)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-len", type=int, default=64, help="max output tokens (</s> excluded)")
    p.add_argument("--max-tokens", type=int, default=2000, help="padded source tokens per batch")
    p.add_argument("--rounds", type=int, default=3, help="alternating timed rounds; best kept")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch default)"
    )
    p.add_argument("--results", default=str(Path(__file__).parent / "results" / "decode.md"))
    p.add_argument("--json", type=Path, default=None, help="also write the figures (JSON) here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    refs, tok, name = None, None, f"random {args.size} model (vocab {args.vocab})"
    if args.checkpoint:
        model, sources, tok, refs, name = checkpoint_sources(args)
    else:
        model = random_model(args.size, args.vocab, args.eos_bias)
        sources = random_sources(args.sentences, args.vocab, seed=1)
    hf = to_marian(model)
    diff = check_same_logits(model, hf, pad_batch(sources[:8], torch.device("cpu")))
    model, hf = model.to(device), hf.to(device)
    if device.type == "cuda":
        hf = hf.to(torch.bfloat16)  # tfcli autocasts to bf16 on CUDA by itself
    order = token_batches([len(s) for s in sources], args.max_tokens)
    batches = [pad_batch([sources[i] for i in b], device) for b in order]
    flat = [i for b in order for i in b]

    times = {"tfcli": [], "hf": []}
    outs = {}
    runners = {
        "tfcli": lambda: run_tfcli(model, batches, args),
        "hf": lambda: run_hf(hf, batches, args),
    }
    for r in range(args.rounds):
        for who in ("tfcli", "hf") if r % 2 == 0 else ("hf", "tfcli"):
            seconds, outs[who] = timed(runners[who], device)
            times[who].append(seconds)
            print(f"round {r + 1}: {who:5s} {seconds:7.2f} s", flush=True)
    report(args, name, diff, sources, flat, times, outs, refs, tok)


def report(args, name, diff, sources, flat, times, outs, refs, tok) -> None:
    n = len(sources)
    rows = {}
    for who in ("tfcli", "hf"):
        best = min(times[who])
        tokens = sum(len(h) + 1 for h in outs[who])
        rows[who] = (n / best, tokens / best, best, tokens)
    same, bleu_agree = agreement(outs["tfcli"], outs["hf"])
    lines = [
        f"## Beam search ({args.beam}): tfcli vs HF transformers generate()",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- hardware: {_hardware(args.device)}",
        f"- torch {torch.__version__}, transformers {__import__('transformers').__version__}",
        f"- model: {name}; max |logit diff| tfcli vs Marian copy: {diff:.2e}",
        f"- data: {n} sentences, {sum(map(len, sources))} source tokens, batches of <= "
        f"{args.max_tokens} padded source tokens (same batches for both), max output {args.max_len}",
        f"- command: python benchmarks/bench_decode.py {' '.join(_argv_echo(args))}",
        f"- timing: best of {args.rounds} alternating rounds",
        "",
        "| system | sentences/s | generated tokens/s | seconds | tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for who, label in (
        ("tfcli", "tfcli beam_search"),
        ("hf", "HF generate (exported Marian/Pegasus)"),
    ):
        s, t, sec, tokens = rows[who]
        lines.append(f"| {label} | {s:.1f} | {t:.0f} | {sec:.2f} | {tokens} |")
    ratio = rows["tfcli"][0] / rows["hf"][0]
    lines += [
        "",
        f"**speed ratio tfcli / HF: {ratio:.2f}x** (sentences/s; generated tokens/s "
        f"{rows['tfcli'][1] / rows['hf'][1]:.2f}x)",
        f"- identical best hypotheses: {same:.1%}; BLEU(tfcli output vs HF output) = {bleu_agree:.1f}",
    ]
    if refs is not None and tok is not None:
        from tfcli.decoding.metrics import bleu_chrf

        ref_in_order = [refs[i] for i in flat]
        for who in ("tfcli", "hf"):
            hyp = tok.decode_batch(outs[who])
            lines.append(f"- BLEU vs references, {who}: {bleu_chrf(hyp, ref_in_order)['bleu']:.2f}")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("\n" + text)
    print(f"appended to {path}")
    if args.json:
        figures = {
            "hardware": _hardware(args.device), "torch": torch.__version__,
            "cuda": torch.version.cuda, "date": datetime.datetime.now().isoformat("T", "seconds"),
            "command": f"python benchmarks/bench_decode.py {' '.join(_argv_echo(args))}",
            "device": args.device, "model": name, "beam": args.beam, "sentences": n,
            "max_logit_diff": diff, "rounds": args.rounds,
            "sentences_per_s": {k: v[0] for k, v in rows.items()},
            "tokens_per_s": {k: v[1] for k, v in rows.items()},
            "seconds": {k: v[2] for k, v in rows.items()}, "ratio": ratio,
            "identical": same, "bleu_agreement": bleu_agree,
        }  # fmt: skip
        args.json.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")


def _hardware(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(torch.device(device))}, CUDA {torch.version.cuda}"
    return f"{cpu_name()}, {torch.get_num_threads()} torch threads, device {device}"


def _argv_echo(args) -> list[str]:
    keys = ("size", "vocab", "eos_bias", "checkpoint", "input", "reference", "sentences", "beam",
            "max_len", "max_tokens", "rounds", "device", "threads")  # fmt: skip
    random_only = ("size", "vocab", "eos_bias")
    out = []
    for k in keys:
        v = getattr(args, k)
        if v in (None, 0) or (args.checkpoint and k in random_only):
            continue
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


if __name__ == "__main__":
    main()
