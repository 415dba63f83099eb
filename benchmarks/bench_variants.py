"""Every Transformer variant of issue 12 against the base model, side by side in one run, at the
same number of updates, on the demo task and on real English -> French text (gettext catalogs).

For each task one joint BPE vocabulary is trained and the splits encoded once (a preparation
run); every variant's run directory starts from copies of them, so all variants see the same
vocabulary, the same batches (same seed and token budget) and the same number of updates. Each
variant is one recipe value (or two) away from the base recipe (demo-tiny's shape: d_model
128, 4 heads, 2+2 layers, pre-norm, sinusoidal positions, tied embeddings):

    base, relative (Shaw 2018, keys), relative + values, alibi, additive scores (Bahdanau),
    linformer (encoder self-attention only; the decoder keeps full attention), a local window,
    exposure: scheduled_sampling / random_tokens, guided attention (Tachibana 2017)

Measured per variant, on the task's test split (first --test sentences):

* BLEU / chrF (sacreBLEU, detokenized hypotheses vs the raw references) of greedy and beam-4
  decoding of the last checkpoint (`tfcli decode`'s Translator: the real decoding path);
* training tokens/s (non-pad source + target tokens per second, the loop's own metric over all
  updates) and decoding sentences/s, greedy and beam, each as a ratio to the base model;
* the cross-attention off-diagonal penalty of the last decoder layer on the test pairs
  (teacher-forced with the references; tfcli.training.guided with g = 0.2: the mean over target
  tokens of sum_s A[n, s] W[n, s]; lower = more diagonal).

Then masked-LM variants (sinusoidal, rotary (the demo-mlm recipe's), relative, alibi,
linformer) pretrain on the demo's monolingual text with `pretrain-mlm`'s objective and report
masked-token accuracy on the held-out text (one fixed mask) and training tokens/s.

Everything runs in this process, one variant after another, with torch set to --threads
threads (1 by default: on a shared machine each run then gets about the same CPU); the base
model runs again at the end, so the drift of the machine's load shows as "base (again)".

    python benchmarks/bench_variants.py --write benchmarks/results/variants.md --pictures benchmarks/results
    # the run behind benchmarks/results/variants.md: two processes at once, then one report
    python benchmarks/bench_variants.py --only demo --steps 100 --test 150 --json demo.json &
    python benchmarks/bench_variants.py --only gettext --only mlm --gettext-steps 100 \
        --mlm-steps 100 --test 100 --json gettext.json
    python benchmarks/bench_variants.py --report demo.json gettext.json --write ... --pictures ...
    python benchmarks/bench_variants.py --steps 10 --gettext-steps 10 --mlm-steps 10 --test 20  # smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import cpu_name  # noqa: E402
from gettext_corpus import build_corpus  # noqa: E402

# name, --set overrides (the task's own values are added: linformer_k, exposure warmup)
SEQ2SEQ = [
    ("base", []),
    ("relative", ["model.positions=relative"]),
    ("relative + values", ["model.positions=relative", "model.relative_values=true"]),
    ("alibi", ["model.positions=alibi"]),
    ("additive scores", ["model.attention_score=additive"]),
    ("linformer (encoder)", ["model.attention=linformer"]),
    ("local window 8", ["model.window=8"]),
    ("scheduled sampling", ["train.exposure=scheduled_sampling", "train.exposure_prob=0.25"]),
    ("random tokens", ["train.exposure=random_tokens", "train.exposure_prob=0.1"]),
    ("guided attention", ["train.guided_attention=1.0"]),
    ("base (again)", []),
]
MLM = [
    ("sinusoidal", ["model.positions=sinusoidal"]),
    ("rotary (recipe)", []),
    ("relative", ["model.positions=relative"]),
    ("alibi", ["model.positions=alibi"]),
    ("linformer", ["model.attention=linformer", "model.linformer_k=32"]),
]
COPIED = ("tokenizer.json", "tokenizer.meta.json", "tokenizer.vocab.txt", "data")


# --- tasks -----------------------------------------------------------------------------------


def demo_task(work: Path, args) -> dict:
    """The demo corpora and the overrides that point demo-tiny at them."""
    from tfcli.demo import write_demo

    d = work / "demo"
    write_demo(d)
    data = [f"data.src=[{d}/train.src]", f"data.tgt=[{d}/train.tgt]",
            f"data.valid_src=[{d}/valid.src]", f"data.valid_tgt=[{d}/valid.tgt]",
            f"data.test_src=[{d}/test.src]", f"data.test_tgt=[{d}/test.tgt]"]  # fmt: skip
    return {
        "name": "demo", "steps": args.steps, "test": (d / "test.src", d / "test.tgt"),
        "sets": data + ["model.linformer_k=16"], "mono": (d / "mono.train.txt", d / "mono.valid.txt"),
        "what": f"demo task (`tfcli demo-data`: 30,000 training pairs), {args.steps} updates, "
        f"first {args.test} test sentences",
    }  # fmt: skip


def gettext_task(work: Path, args) -> dict:
    """en -> fr pairs from the machine's .mo catalogs (benchmarks/gettext_corpus.py)."""
    d = work / "gettext"
    manifest = build_corpus(d, "fr", max_train=args.max_train)
    data = [f"data.src=[{d}/train.en]", f"data.tgt=[{d}/train.fr]",
            f"data.valid_src=[{d}/valid.en]", f"data.valid_tgt=[{d}/valid.fr]",
            f"data.test_src=[{d}/test.en]", f"data.test_tgt=[{d}/test.fr]"]  # fmt: skip
    shape = ["tokenizer.vocab_size=4000", "data.max_len=64", f"train.max_tokens={args.max_tokens}",
             "model.linformer_k=64"]  # fmt: skip
    pairs = manifest["splits"]["train"]["pairs"] if "splits" in manifest else "?"
    return {
        "name": "gettext", "steps": args.gettext_steps, "test": (d / "test.en", d / "test.fr"),
        "sets": data + shape, "sha256": manifest.get("sha256", ""),
        "what": f"gettext en -> fr ({pairs} training pairs, vocabulary 4000, max_len 64, "
        f"{args.max_tokens}-token batches), {args.gettext_steps} updates, first {args.test} test "
        "sentences",
    }  # fmt: skip


# --- one variant -------------------------------------------------------------------------------


WARMUP = [50]  # optim.warmup_steps of every run (--warmup)


def recipe_for(name: str, run_dir: Path, sets: list[str], steps: int, extra: list[str]):
    from tfcli.recipe import loader

    common = [f"run_dir={run_dir}", f"train.max_steps={steps}", f"train.eval_every={steps}",
              f"optim.warmup_steps={WARMUP[0]}", "mlm.batch_size=32",
              f"train.log_every={steps}", "train.eval_bleu=false", "train.keep_last=1",
              "train.device=cpu", f"train.exposure_warmup={max(steps // 2, 1)}"]  # fmt: skip
    return loader.load(name, [*common, *sets, *extra])


def prepare(task: dict, work: Path, kind: str) -> Path:
    """Train the tokenizer and encode the splits once, in a preparation run directory."""
    from tfcli.pipeline import ensure_encoded, ensure_tokenizer

    prep = work / f"{task['name']}-{kind}-prep"
    recipe = recipe_for("demo-mlm" if kind == "mlm" else "demo-tiny", prep, task["sets"], 1, [])
    ensure_tokenizer(recipe, kind="text" if kind == "mlm" else "parallel")
    ensure_encoded(recipe, kind="text" if kind == "mlm" else "parallel")
    return prep


def fresh_run(prep: Path, run_dir: Path) -> None:
    """A run directory holding copies of the preparation run's tokenizer and splits."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    for name in COPIED:
        src = prep / name
        if src.is_dir():
            shutil.copytree(src, run_dir / name)
        elif src.exists():
            shutil.copy2(src, run_dir / name)


def train_rate(run_dir: Path) -> float:
    """tokens/s of the run's one train record (log_every = steps: every update)."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    return [r for r in rows if r.get("split") == "train"][-1]["tokens_per_s"]


def decode_scores(ckpt: Path, test: tuple[Path, Path], n: int) -> dict:
    """Greedy and beam-4 BLEU/chrF and sentences/s of the checkpoint on the first n test lines."""
    from tfcli.checkpoints.files import load_model, load_tokenizers
    from tfcli.decoding.metrics import bleu_chrf
    from tfcli.decoding.translate import Translator
    from tfcli.recipe.schema import DecodeConfig, SearchMode

    model, meta = load_model(ckpt)
    toks = load_tokenizers(meta)
    src = test[0].read_text(encoding="utf-8").splitlines()[:n]
    ref = test[1].read_text(encoding="utf-8").splitlines()[:n]
    out = {}
    for mode in (SearchMode.GREEDY, SearchMode.BEAM):
        cfg = DecodeConfig(mode=mode, beam_size=4, max_len_a=1.5, max_len_b=10)
        tr = Translator(model, toks["src"], toks["tgt"], cfg)
        hyps = [t.texts[0] for t in tr.translate(src)]
        s = bleu_chrf(hyps, ref)
        rate = tr.stats.sentences / max(tr.stats.seconds, 1e-9)
        out[mode.value] = {"bleu": s["bleu"], "chrf": s["chrf"], "sent_per_s": rate}
    out["diagonal_penalty"] = diagonal_penalty(model, ckpt.parent.parent / "data" / "test", n)
    return out


@torch.no_grad()
def diagonal_penalty(model: torch.nn.Module, split: Path, n: int) -> float:
    """Mean guided-attention penalty (g = 0.2) of the last decoder layer on n test pairs."""
    import numpy as np

    from tfcli.data.split import collate_parallel, open_split
    from tfcli.training.guided import guided_penalty

    data = open_split(split)
    model.eval()
    last = (len(model.decoder.layers) - 1,)
    total = tokens = 0.0
    for start in range(0, min(n, len(data)), 50):
        b = collate_parallel(data, np.arange(start, min(start + 50, n, len(data))))
        _, attn = model(b["src"], b["tgt"][:, :-1], None, last)
        total += float(guided_penalty(attn, b["src"], b["tgt"], 0.2))
        tokens += float((b["tgt"][:, 1:] != 0).sum())
    return total / max(tokens, 1.0)


def run_seq2seq(task: dict, work: Path, args, results: dict) -> None:
    from tfcli.training.setup import train_seq2seq

    prep = prepare(task, work, "seq2seq")
    rows = results.setdefault(task["name"], {})
    for name, extra in SEQ2SEQ:
        run_dir = work / task["name"] / name.replace(" ", "_").replace("(", "").replace(")", "")
        fresh_run(prep, run_dir)
        recipe = recipe_for("demo-tiny", run_dir, task["sets"], task["steps"], extra)
        began = time.monotonic()
        summary = train_seq2seq(recipe)
        row = {"sets": extra, "train_seconds": summary["train_seconds"],
               "tokens_per_s": train_rate(run_dir)}  # fmt: skip
        row.update(decode_scores(Path(summary["last_checkpoint"]), task["test"], args.test))
        row["wall_s"] = time.monotonic() - began
        rows[name] = row
        log(f"{task['name']} {name}: {json.dumps(row)}")
        save(results, args)


def pictures(task_dir: Path, test_src: Path, out_dir: Path) -> list[Path]:
    """`tfcli decode --attention` of the base and the guided model on the same test line (the
    first of 8+ words): out_dir/variants-attention-{base,guided}.png."""
    from tfcli.checkpoints import steps
    from tfcli.checkpoints.files import load_model, load_tokenizers
    from tfcli.decoding.attention_plot import plot_translation
    from tfcli.decoding.translate import Translator
    from tfcli.recipe.schema import DecodeConfig, SearchMode

    lines = test_src.read_text(encoding="utf-8").splitlines()
    line = next((x for x in lines if len(x.split()) >= 8), lines[0])
    out = []
    for name, run in (("base", "base"), ("guided", "guided_attention")):
        model, meta = load_model(steps.resolve_checkpoint(task_dir / run, "latest"))
        toks = load_tokenizers(meta)
        cfg = DecodeConfig(mode=SearchMode.GREEDY)
        (tr,) = Translator(model, toks["src"], toks["tgt"], cfg).translate([line])
        path = out_dir / f"variants-attention-{name}.png"
        out.append(plot_translation(model, toks["src"], toks["tgt"], tr, path))
        log(f"attention of {run!r} on {line!r} -> {path}")
    return out


def run_mlm(task: dict, work: Path, args, results: dict) -> None:
    from tfcli.training.setup import pretrain_mlm

    mono = [f"data.text=[{task['mono'][0]}]", f"data.valid_text=[{task['mono'][1]}]"]
    task = {**task, "name": "mlm", "sets": mono}
    prep = prepare(task, work, "mlm")
    rows = results.setdefault("mlm", {})
    for name, extra in MLM:
        run_dir = work / "mlm" / name.split()[0]
        fresh_run(prep, run_dir)
        recipe = recipe_for("demo-mlm", run_dir, mono, args.mlm_steps, extra)
        summary = pretrain_mlm(recipe)
        m = summary["metrics"]
        rows[name] = {"sets": extra, "accuracy": m["accuracy"], "loss": m["loss"],
                      "tokens_per_s": train_rate(run_dir),
                      "train_seconds": summary["train_seconds"]}  # fmt: skip
        log(f"mlm {name}: {json.dumps(rows[name])}")
        save(results, args)


# --- report ----------------------------------------------------------------------------------


def log(msg: str) -> None:
    sys.stderr.write(f"[bench_variants {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def save(results: dict, args) -> None:
    Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")


def mean_base(rows: dict) -> dict:
    """The reference for the ratios: the mean of the two base runs (first and last)."""
    runs = [rows[k] for k in ("base", "base (again)") if k in rows]
    mean = {"tokens_per_s": sum(r["tokens_per_s"] for r in runs) / len(runs)}
    for mode in ("greedy", "beam"):
        mean[mode] = {"sent_per_s": sum(r[mode]["sent_per_s"] for r in runs) / len(runs)}
    return mean


def seq2seq_table(rows: dict) -> list[str]:
    base = mean_base(rows)
    out = [
        "| variant (`--set`) | greedy BLEU | chrF | beam-4 BLEU | chrF | train tok/s vs base "
        "| greedy sent/s vs base | beam sent/s vs base | off-diagonal penalty |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        sets = ", ".join(f"`{s}`" for s in r["sets"]) or "(recipe)"
        g, b = r["greedy"], r["beam"]
        out.append(
            f"| {name}: {sets} | {g['bleu']:.2f} | {g['chrf']:.2f} | {b['bleu']:.2f} | "
            f"{b['chrf']:.2f} | {r['tokens_per_s'] / base['tokens_per_s']:.2f} "
            f"({r['tokens_per_s']:,.0f}) | {g['sent_per_s'] / base['greedy']['sent_per_s']:.2f} | "
            f"{b['sent_per_s'] / base['beam']['sent_per_s']:.2f} | {r['diagonal_penalty']:.3f} |"
        )
    return out


def mlm_table(rows: dict) -> list[str]:
    base = rows["sinusoidal"]
    out = [
        "| variant (`--set`) | masked-token accuracy | valid loss | train tok/s vs sinusoidal |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        sets = ", ".join(f"`{s}`" for s in r["sets"]) or "(recipe: rotary)"
        out.append(
            f"| {name}: {sets} | {100 * r['accuracy']:.2f}% | {r['loss']:.3f} | "
            f"{r['tokens_per_s'] / base['tokens_per_s']:.2f} ({r['tokens_per_s']:,.0f}) |"
        )
    return out


def markdown(results: dict, args) -> str:
    head = [
        "# Transformer variants against the base model (demo task, gettext, masked LM)",
        "",
        f"`{results['command']}` on cpu ({results['cpu']}, torch threads {results['threads']}; "
        f"{os.cpu_count()} cores visible, shared with other jobs: load average "
        f"{results['load']}), {results['date']}, {results['minutes']:.1f} minutes in all. "
        "Same vocabulary, batches (seed 1) and number of updates for every variant of a task; "
        "demo-tiny's shape (d_model 128, 4 heads, d_ff 512, 2+2 layers, pre-norm, tied "
        "embeddings, 1.1M parameters on the demo); the task's first test sentences decoded "
        "from the last checkpoint with the real decoding path (greedy, beam 4; lengths <= 1.5 * "
        "source + 10). Ratios > 1 = faster than the base, whose speed is the mean of its two "
        "runs (first and last: the machine's drift shows between the two base rows). The off-diagonal penalty is the guided-attention loss "
        "(g = 0.2) of the last decoder layer on the teacher-forced test pairs: lower = more "
        "diagonal. Exposure runs ramp their probability linearly over the first half of the "
        f"updates. Every run warms the learning rate up over {results['warmup']} updates "
        "(the recipes' 200 would leave these short runs at a fraction of the peak rate).",
    ]
    for task in ("demo", "gettext"):
        if task in results:
            head += ["", f"## {results['what'][task]}", "", *seq2seq_table(results[task])]
    if "mlm" in results:
        head += [
            "", f"## Masked LM (`pretrain-mlm`, demo-mlm recipe, {results['mlm_steps']} updates "
            "of 32 sentences)", "",
            "Held-out text: the demo's mono.valid.txt, masked once with a fixed seed (the "
            "objective's own validation).", "", *mlm_table(results["mlm"]),
        ]  # fmt: skip
    return "\n".join(head) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200, help="updates on the demo task")
    ap.add_argument("--gettext-steps", type=int, default=300, help="updates on gettext")
    ap.add_argument("--mlm-steps", type=int, default=300, help="masked-LM updates")
    ap.add_argument("--max-train", type=int, default=0, help="gettext training pairs (0 = all)")
    ap.add_argument("--test", type=int, default=300, help="test sentences decoded per variant")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=50, help="optim.warmup_steps of every run")
    ap.add_argument("--max-tokens", type=int, default=600, help="gettext train.max_tokens")
    ap.add_argument("--only", choices=["demo", "gettext", "mlm"], action="append")
    ap.add_argument("--work", type=Path, default=None, help="work dir (default: a temp dir)")
    ap.add_argument("--json", default="/tmp/bench_variants.json", help="raw results")
    ap.add_argument("--write", type=Path, help="write the markdown here")
    ap.add_argument("--report", nargs="+", help="only write the markdown from these JSON files")
    ap.add_argument("--pictures", type=Path, help="draw base vs guided attention PNGs here")
    args = ap.parse_args()
    if args.report:
        if args.pictures and args.work:  # from the demo runs of an earlier --work
            pictures(args.work / "demo", args.work / "demo" / "test.src", args.pictures)
        return report(args)
    torch.set_num_threads(args.threads)
    WARMUP[0] = args.warmup
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-variants-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    only = args.only or ["demo", "gettext", "mlm"]
    began = time.monotonic()
    results: dict = {"command": "python benchmarks/bench_variants.py " + " ".join(sys.argv[1:]),
                     "cpu": cpu_name(), "date": datetime.date.today().isoformat(), "what": {},
               "threads": args.threads, "test": args.test, "mlm_steps": args.mlm_steps,
               "warmup": args.warmup}  # fmt: skip
    demo = demo_task(work, args)
    for task in (demo, gettext_task(work, args) if "gettext" in only else None):
        if task is not None and task["name"] in only:
            results["what"][task["name"]] = task["what"]
            run_seq2seq(task, work, args, results)
            if task["name"] == "demo" and args.pictures:
                pictures(work / "demo", task["test"][0], args.pictures)
    if "mlm" in only:
        run_mlm(demo, work, args, results)
    results["minutes"] = (time.monotonic() - began) / 60
    results["load"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    save(results, args)
    text = markdown(results, args)
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def report(args) -> None:
    """Merge the JSON of runs made in parallel (e.g. --only demo --only mlm | --only gettext)."""
    parts = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.report]
    results = {**parts[0], "what": {}}
    for part in parts:
        for task, what in part["what"].items():  # JSON of runs before the count was named
            tail = "" if "test sentences" in what else f", first {part['test']} test sentences"
            results["what"][task] = what + tail
        results.update({k: v for k, v in part.items() if k in ("demo", "gettext", "mlm")})
        if "mlm" in part:
            results["mlm_steps"] = part["mlm_steps"]
    results["command"] = " & ".join(p["command"] for p in parts)
    results["minutes"] = max(p["minutes"] for p in parts)
    results["load"] = parts[-1]["load"]
    text = markdown(results, args)
    if args.write:
        args.write.write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
