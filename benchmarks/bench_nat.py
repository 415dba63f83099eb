"""Non-autoregressive (Mask-Predict) vs autoregressive translation: same model, same budget.

For each task (the demo task, and real English -> French gettext messages), four models of the
same size (the nat-* recipe's) are trained for the same number of updates with `tfcli train`:

* AR: the recipe with `model.decoder: autoregressive` (teacher forcing);
* NAT raw: the recipe as it is (CMLM objective) on the human references;
* NAT distilled: the same, with `data.distill_from: <the AR run>` (the AR model's beam-5
  translations of the training sources as targets).

Then the test set is decoded on CPU, side by side in one process: AR beam 5 and greedy, and
mask-predict with T = 1, 4, 10 for both NAT models. Printed and written as markdown: BLEU and
chrF (sacreBLEU), sentences/s, and speed relative to AR beam 5. Under load (a shared machine),
`--threads 1` is fairer: every configuration runs with one intra-op thread, and configurations
alternate over `--rounds`, the best round counting.

    python benchmarks/bench_nat.py --work /tmp/bench-nat                  # demo + gettext
    python benchmarks/bench_nat.py --tasks demo --steps 300 --train-pairs 5000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

TFCLI = [sys.executable, "-m", "tfcli"]
RECIPES = {"demo": "nat-demo", "gettext": "nat-gettext"}
# Bounded to minutes on a shared CPU: gettext at the demo recipe's size and batch (all four models
# alike), instead of nat-gettext.yaml's 256-wide 3+3 layers.
SMALLER = {
    "gettext": ["model.d_model=128", "model.d_ff=512", "model.encoder_layers=2",
                "model.decoder_layers=2", "tokenizer.vocab_size=4000", "train.max_tokens=1000",
                "optim.warmup_steps=200", "optim.lr=2e-3", "model.max_positions=128",
                "data.max_len=64"],
}  # fmt: skip


def prepare_data(task: str, out: Path, train_pairs: int, test_pairs: int) -> dict[str, Path]:
    """{train_src, train_tgt, valid_src, valid_tgt, test_src, test_tgt} files for `task`."""
    out.mkdir(parents=True, exist_ok=True)
    if task == "demo":
        from tfcli.demo import make_splits

        splits = make_splits(1, train_pairs, 500, test_pairs)
        files = {}
        for split, pairs in splits.items():
            for side, k in (("src", 0), ("tgt", 1)):
                p = out / f"{split}.{side}"
                p.write_text("".join(pair[k] + "\n" for pair in pairs), encoding="utf-8")
                files[f"{split}_{side}"] = p
        return files
    from gettext_corpus import build_corpus

    build_corpus(out, "fr", max_train=train_pairs, test_size=test_pairs)
    return {f"{s}_{side}": out / f"{s}.{ext}" for s in ("train", "valid", "test")
            for side, ext in (("src", "en"), ("tgt", "fr"))}  # fmt: skip


def train(recipe: str, run_dir: Path, files: dict[str, Path], steps: int, extra: list[str],
          threads: int, reuse: bool = False) -> float | None:  # fmt: skip
    """`tfcli train` for `steps` updates (validation once, at the end); -> wall seconds.
    With `reuse`, a run that already finished `steps` updates is kept (-> None)."""
    if reuse and _finished(run_dir, steps):
        return None
    sets = {
        "data.src": f"[{files['train_src']}]", "data.tgt": f"[{files['train_tgt']}]",
        "data.valid_src": f"[{files['valid_src']}]", "data.valid_tgt": f"[{files['valid_tgt']}]",
        "data.test_src": "[]", "data.test_tgt": "[]", "train.max_steps": str(steps),
        "train.eval_every": str(steps), "train.eval_max_sentences": "100", "train.device": "cpu",
    }  # fmt: skip
    cmd = [*TFCLI, "train", recipe, "--run-dir", str(run_dir), "--force"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    for e in extra:
        cmd += ["--set", e]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TFCLI_QUIET": "1"}
    began = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"train {run_dir} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def _finished(run_dir: Path, steps: int) -> bool:
    """Whether run_dir's metrics record a validation at update `steps` (its last)."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return False
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line]
    return any(r.get("step") == steps and r.get("split") == "valid" for r in rows)


def translators(
    runs: dict[str, Path], iterations: tuple[int, ...], length_beams: tuple[int, ...]
) -> dict[str, object]:
    """name -> a ready translator (AR beam 5 / greedy, NAT T=.., L=..) over the trained runs."""
    import dataclasses

    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints.steps import resolve_checkpoint
    from tfcli.decoding.mask_predict import MaskPredictTranslator
    from tfcli.decoding.translate import Translator
    from tfcli.recipe import loader
    from tfcli.recipe.schema import SearchMode

    out = {}
    for name, run in runs.items():
        model, meta = ckpt.load_model(resolve_checkpoint(run), "cpu")
        toks = ckpt.load_tokenizers(meta)
        cfg = loader.from_dict({"decode": meta["recipe"]["decode"]}).decode
        if name == "AR":
            beam = dataclasses.replace(cfg, mode=SearchMode.BEAM, beam_size=5, nbest=1)
            out["AR beam 5"] = Translator(model, toks["src"], toks["tgt"], beam)
            greedy = dataclasses.replace(cfg, mode=SearchMode.GREEDY, nbest=1)
            out["AR greedy"] = Translator(model, toks["src"], toks["tgt"], greedy)
            continue
        for lb in length_beams:
            for t in iterations:
                c = dataclasses.replace(
                    cfg, mode=SearchMode.MASK_PREDICT, iterations=t, length_beam=lb, nbest=1
                )
                out[f"{name} T={t}, L={lb}"] = MaskPredictTranslator(
                    model, toks["src"], toks["tgt"], c
                )
    return out


def measure(
    named: dict[str, object], src: list[str], refs: list[str], rounds: int, single: int
) -> dict:
    """Decode `src` with every translator, `rounds` times alternating; best time counts.

    Two regimes: batched (the recipe's decode.max_tokens per batch, throughput) and one
    sentence per batch over the first `single` sentences (latency: what an interactive user or
    a server sees, and how the NAT papers time decoding). BLEU/chrF come from the batched run
    over all of `src`."""
    import dataclasses

    from tfcli.decoding.metrics import bleu_chrf

    best: dict[str, float] = {}
    best_one: dict[str, float] = {}
    scores: dict[str, dict] = {}
    for _ in range(rounds):
        for name, tr in named.items():
            batched = tr.cfg
            tr.translate_chunk(src[:16])  # warm-up
            began = time.perf_counter()
            results = tr.translate_chunk(src)
            took = time.perf_counter() - began
            best[name] = min(best.get(name, took), took)
            scores[name] = bleu_chrf([r.texts[0] for r in results], refs)
            if single:
                tr.cfg = dataclasses.replace(batched, max_tokens=1)  # every sentence alone
                began = time.perf_counter()
                tr.translate_chunk(src[:single])
                took = time.perf_counter() - began
                best_one[name] = min(best_one.get(name, took), took)
                tr.cfg = batched
    return {n: {"bleu": scores[n]["bleu"], "chrf": scores[n]["chrf"],
                "sent_s": len(src) / best[n],
                "sent_s_1": single / best_one[n] if single else None} for n in named}  # fmt: skip


def run_task(task: str, work: Path, args: argparse.Namespace) -> dict:
    files = prepare_data(task, work / task / "data", args.train_pairs, args.test_pairs)
    recipe, root = RECIPES[task], work / task
    base = [*SMALLER.get(task, []), f"train.max_tokens={args.max_tokens}"]
    ar_extra = [*base, "model.decoder=autoregressive", "decode.mode=beam", "decode.beam_size=5"]
    kd = [*base, f"data.distill_from={root / 'ar'}"]
    seconds = {
        name: train(recipe, root / run, files, args.steps, extra, args.threads, args.reuse)
        for name, run, extra in (("AR", "ar", ar_extra), ("NAT raw", "nat", base),
                                 ("NAT distilled", "nat-kd", kd))
    }  # fmt: skip
    torch.set_num_threads(args.threads)
    from tfcli.allocator import keep_freed_memory

    keep_freed_memory("cpu")  # as `tfcli decode` does on CPU
    runs = {"AR": root / "ar", "NAT raw": root / "nat", "NAT distilled": root / "nat-kd"}
    named = translators(runs, tuple(args.iterations), tuple(args.length_beams))
    src = files["test_src"].read_text(encoding="utf-8").splitlines()
    refs = files["test_tgt"].read_text(encoding="utf-8").splitlines()
    with torch.inference_mode():
        table = measure(named, src, refs, args.rounds, min(args.single, len(src)))
    return {"train_seconds": seconds, "table": table, "sentences": len(src)}


def markdown(results: dict, args: argparse.Namespace, cmd: str) -> str:
    lines = [
        "# Non-autoregressive (Mask-Predict) vs autoregressive decoding",
        "",
        f"Script: `benchmarks/bench_nat.py`; run {datetime.date.today()} on {platform.machine()}, "
        f"{os.cpu_count()} CPU cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.0f} at the end), torch {torch.__version__}, "
        f"{args.threads} intra-op thread(s) for every configuration; no GPU was lent.",
        "",
        f"    {cmd}",
        "",
        f"Same model size (the nat-* recipe's), same budget: {args.steps} updates of "
        f"{args.max_tokens} tokens each, {args.train_pairs:,} training pairs. L = length beam.",
    ]
    for task, r in results.items():
        ar = r["table"]["AR beam 5"]
        single = ar["sent_s_1"] is not None
        lines += ["", f"## {task} ({r['sentences']} test sentences, CPU)", "",
                  "Batched: decode.max_tokens per batch (throughput). One at a time: each "
                  "sentence its own batch (latency; how NAT papers time decoding).", "",
                  "| decoder | BLEU | chrF | BLEU vs AR beam 5 | batched sent/s | vs AR beam 5 |"
                  + (" one-at-a-time sent/s | vs AR beam 5 |" if single else ""),
                  "|---|---|---|---|---|---|" + ("---|---|" if single else "")]  # fmt: skip
        for name, row in r["table"].items():
            rel = row["bleu"] / ar["bleu"] if ar["bleu"] else float("nan")
            line = (
                f"| {name} | {row['bleu']:.1f} | {row['chrf']:.1f} | {rel:.0%} | "
                f"{row['sent_s']:.1f} | {row['sent_s'] / ar['sent_s']:.2f}x |"
            )
            if single:
                line += f" {row['sent_s_1']:.1f} | {row['sent_s_1'] / ar['sent_s_1']:.2f}x |"
            lines.append(line)
        t = r["train_seconds"]
        lines += ["", "Training wall time (s, incl. tokenizing, encoding, the one validation; "
                  "NAT distilled incl. distilling): "
                  + ", ".join(f"{k} {'reused' if v is None else f'{v:.0f}'}"
                              for k, v in t.items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-nat"))
    ap.add_argument("--tasks", default="demo,gettext")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--train-pairs", type=int, default=5000)
    ap.add_argument("--test-pairs", type=int, default=500)
    ap.add_argument("--iterations", type=int, nargs="+", default=[1, 4, 10])
    ap.add_argument("--length-beams", type=int, nargs="+", default=[1, 3])
    ap.add_argument(
        "--single",
        type=int,
        default=200,
        help="sentences timed one per batch (latency regime); 0 = skip",
    )
    ap.add_argument("--max-tokens", type=int, default=1000, help="train.max_tokens, every model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep runs in --work that already trained --steps updates (time decoding only)",
    )
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/nat.md"))
    args = ap.parse_args()
    results = {}
    for task in args.tasks.split(","):
        results[task] = run_task(task, args.work, args)
        (args.work / "nat.json").write_text(json.dumps(results, indent=1))  # after each task
    cmd = "python " + " ".join(sys.argv)
    text = markdown(results, args, cmd)
    print(text)
    args.results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
