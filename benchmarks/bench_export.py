"""Decoding engines side by side on the same weights: tfcli's PyTorch engine vs CTranslate2
(float32 and int8, converted by `tfcli export`), greedy and beam 5, with BLEU; HF transformers
`generate` on the exported model for reference. One process, same sentences, same settings.

    python benchmarks/bench_export.py --checkpoint runs/demo-tiny --input demo/test.src \\
        --reference demo/test.tgt --threads 1
    python benchmarks/bench_export.py ... --random small      # + a random 256-wide model
    python benchmarks/bench_export.py ... --profile           # where tfcli's beam time goes

Each engine runs the `tfcli decode` code path (`Translator.translate_chunk` /
`CTranslate2Translator.translate_chunk`: tokenize, length-sorted batches of --max-tokens,
search, detokenize), so sentences/s is what `tfcli decode --engine ...` delivers. Rounds
alternate between engines, so load on a shared machine hits all alike; the best round counts.
With --random, a random model (a </s> bias makes its outputs end at varied lengths) shows a
compute-bound point: BLEU is meaningless there, so agreement with tfcli's output is reported.
Results are appended to benchmarks/results/export.md (--results).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_decode import _hardware, random_model  # noqa: E402

from tfcli.checkpoints import files as ckpt  # noqa: E402
from tfcli.checkpoints.steps import resolve_checkpoint  # noqa: E402
from tfcli.decoding.ctranslate2_engine import CTranslate2Translator  # noqa: E402
from tfcli.decoding.metrics import bleu_chrf  # noqa: E402
from tfcli.decoding.translate import Translator, pad_batch, token_batches  # noqa: E402
from tfcli.export.ctranslate2 import export_ctranslate2  # noqa: E402
from tfcli.export.hf import generate_kwargs, generated_ids, to_hf  # noqa: E402
from tfcli.export.meta import read_export  # noqa: E402
from tfcli.recipe.schema import DecodeConfig, SearchMode  # noqa: E402
from tfcli.textio import iter_lines  # noqa: E402
from tfcli.tokenizer.vocab import EOS, PAD  # noqa: E402

ENGINES = ("tfcli", "ct2-float32", "ct2-int8")


def engines(path: Path, model, toks, cfg: DecodeConfig, work: Path, threads: int) -> dict:
    """{name: translator} on the same weights; CTranslate2 dirs converted by tfcli export."""
    out = {"tfcli": Translator(model, toks["src"], toks["tgt"], cfg)}
    for q in ("float32", "int8"):
        d = work / f"{path.stem}-{q}"
        if not d.exists():
            export_ctranslate2(path, d, q)
        out[f"ct2-{q}"] = CTranslate2Translator(d, read_export(d), cfg, threads=threads)
    return out


def hf_generate(hf, tok, lines: list[str], cfg: DecodeConfig, max_positions: int) -> list[str]:
    """HF generate over the same token-budget batches, texts in input order."""
    src = [[*e.ids, EOS] for e in tok.encode_batch(lines)]
    outs: list[list[int]] = [[] for _ in lines]
    k = cfg.beam_size if cfg.mode is SearchMode.BEAM else 1
    with torch.inference_mode():
        for batch in token_batches([len(s) * k for s in src], cfg.max_tokens):
            x = pad_batch([src[i] for i in batch], torch.device("cpu"))
            longest = max(len(src[i]) for i in batch)  # HF has one limit per batch
            limit = min(int(cfg.max_len_a * longest + cfg.max_len_b), max_positions - 1)
            seqs = hf.generate(
                input_ids=x,
                attention_mask=x != PAD,
                **generate_kwargs(k, cfg.length_penalty, limit),
            )
            for i, ids in zip(batch, generated_ids(seqs), strict=True):
                outs[i] = ids
    return tok.decode_batch(outs)


def run_point(label, path, model, toks, lines, refs, args, work) -> list[str]:
    rows = []
    for mode, beam in (("greedy", 1), ("beam", args.beam)):
        cfg = DecodeConfig(mode=SearchMode(mode), beam_size=beam, max_tokens=args.max_tokens)
        systems = engines(path, model, toks, cfg, work, args.threads)
        best = {name: float("inf") for name in systems}
        texts = {}
        for r in range(args.rounds):
            order = list(systems) if r % 2 == 0 else list(reversed(systems))
            for name in order:
                t = time.perf_counter()
                texts[name] = [x.texts[0] for x in systems[name].translate_chunk(lines)]
                best[name] = min(best[name], time.perf_counter() - t)
                print(f"{label} {mode}: round {r + 1} {name:12s} {best[name]:.2f} s", flush=True)
        if args.hf:
            hf = to_hf(model)
            t = time.perf_counter()
            texts["hf"] = hf_generate(hf, toks["src"], lines, cfg, model.spec.max_positions)
            best["hf"] = time.perf_counter() - t
        base = best["tfcli"]
        for name in best:
            same = sum(a == b for a, b in zip(texts[name], texts["tfcli"], strict=True)) / len(
                lines
            )
            if refs is not None:
                quality = f"{bleu_chrf(texts[name], refs)['bleu']:.2f}"
            else:  # random weights: no reference; how far the output drifts from tfcli's
                quality = f"{bleu_chrf(texts[name], texts['tfcli'])['bleu']:.1f} vs tfcli"
            words = sum(len(t.split()) for t in texts[name]) / len(lines)
            rows.append(
                f"| {label} | {mode if beam == 1 else f'beam {beam}'} | {name} | "
                f"{len(lines) / best[name]:.1f} | {base / best[name]:.2f}x | {quality} | {same:.1%} | {words:.1f} |"
            )
    return rows


def profile_tfcli(model, toks, lines, beam: int) -> str:
    """cProfile of tfcli's beam decode: the top functions by own time."""
    cfg = DecodeConfig(mode=SearchMode.BEAM, beam_size=beam)
    tr = Translator(model, toks["src"], toks["tgt"], cfg)
    prof = cProfile.Profile()
    prof.enable()
    tr.translate_chunk(lines)
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
    return s.getvalue()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", required=True, help="a trained tfcli checkpoint or run dir")
    p.add_argument("--input", required=True)
    p.add_argument("--reference")
    p.add_argument("--sentences", type=int, default=500)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument(
        "--max-tokens", type=int, default=8192, help="decode.max_tokens (as tfcli decode)"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch and CTranslate2 intra-op threads")
    p.add_argument(
        "--hf",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also HF generate (one round)",
    )
    p.add_argument(
        "--random", choices=["tiny", "small", "base"], help="also a random model of this size"
    )
    p.add_argument("--random-sentences", type=int, default=100)
    p.add_argument("--random-eos-bias", type=float, default=2.0, help="raise </s> so outputs end")
    p.add_argument("--profile", action="store_true", help="profile tfcli's beam search")
    p.add_argument("--results", default=str(Path(__file__).parent / "results" / "export.md"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = resolve_checkpoint(Path(args.checkpoint))
    model, meta = ckpt.load_model(path)
    toks = ckpt.load_tokenizers(meta)
    lines = list(iter_lines(Path(args.input)))[: args.sentences]
    refs = list(iter_lines(Path(args.reference)))[: len(lines)] if args.reference else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows += run_point(
            f"trained {path.parent.parent.name}", path, model, toks, lines, refs, args, work
        )
        if args.random:
            rnd = random_model(args.random, model.spec.src_vocab_size, args.random_eos_bias)
            rpath = work / f"random-{args.random}.safetensors"
            spec = rnd.spec.to_dict()
            ckpt.save_checkpoint(rpath, rnd, {**meta, "model": spec})
            rargs = argparse.Namespace(**{**vars(args), "hf": False})
            rlines = lines[: args.random_sentences]
            rows += run_point(f"random {args.random}", rpath, rnd, toks, rlines, None, rargs, work)
    prof = profile_tfcli(model, toks, lines, args.beam) if args.profile else ""
    report(args, path, model, rows, prof)


def report(args, path, model, rows, prof: str) -> None:
    import ctranslate2
    import transformers

    s = model.spec
    text = "\n".join([
        "## tfcli decode engines: PyTorch vs CTranslate2 (float32, int8), HF generate for reference",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- hardware: {_hardware('cpu')}; CTranslate2 intra_threads {args.threads}",
        f"- torch {torch.__version__}, ctranslate2 {ctranslate2.__version__}, transformers {transformers.__version__}",
        f"- model: {path} (d_model {s.d_model}, {s.encoder_layers}+{s.decoder_layers} layers, norm {s.norm.value}, vocab {s.src_vocab_size})",
        f"- command: python benchmarks/bench_export.py {' '.join(sys.argv[1:])}",
        f"- timing: best of {args.rounds} alternating rounds (HF: one round); tokenize + search + detokenize",
        "",
        "| model | search | engine | sentences/s | vs tfcli | BLEU | identical to tfcli | words/output |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *rows,
    ])  # fmt: skip
    if prof:
        text += (
            "\n\ntfcli beam profile (cProfile, top functions by own time):\n\n```\n"
            + prof.strip()
            + "\n```"
        )
    text += "\n"
    print("\n" + text)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        f.write("\n" + text)
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
