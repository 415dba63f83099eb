"""Time `tfcli tokenize` against sentencepiece and HF tokenizers' BpeTrainer, side by side.

All three learn a BPE vocabulary of the same size from the same synthetic multilingual corpus
(benchmarks/corpus.py) with NFKC and sentencepiece-style word boundaries, each in its own
process, interleaved per repeat so that machine load hits all of them alike:

* tfcli:         `tfcli tokenize CORPUS --vocab-size V -o ...` (the real CLI, end to end)
* sentencepiece: SentencePieceTrainer.train(model_type=bpe, input_sentence_size=0 (all lines),
                 num_threads=2)
* tfcli --trainer sentencepiece: the same CLI, sentencepiece learning the vocabulary (goal:
                 within 1.2x of sentencepiece alone), converted into tokenizer.json
* HF BpeTrainer: Tokenizer(BPE) + NFKC + Metaspace, `tokenizer.train([CORPUS], BpeTrainer)`
                 (the Rust file reader: HF's fastest path)

Wall and CPU seconds (children's user+sys) are the best of --repeat runs. Tokens per line on the
first 5,000 lines checks that the vocabularies compress alike. --variants also times tfcli's
library in-process (no CLI start-up, no summary), as is and with one setting changed: blocks of
lines joined into one long sequence, one rayon thread, a 16-character piece cap like
sentencepiece's default; that shows which levers matter.

Tokenizer training is CPU-only: there is no GPU path to measure.

    python benchmarks/bench_tokenize.py --mb 20 --vocab 8000 32000 --repeat 2 --variants
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus import write_corpus  # noqa: E402

SPM = """
import sys, sentencepiece as spm
corpus, vocab, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, model_type="bpe",
    vocab_size=vocab, input_sentence_size=0, num_threads=2, minloglevel=2)
"""

HF = """
import sys
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
corpus, vocab, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.normalizer = normalizers.NFKC()
tok.pre_tokenizer = pre_tokenizers.Metaspace()
specials = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=specials,
    show_progress=False)
tok.train([corpus], trainer)
tok.save(out)
"""

# tfcli's library with one setting changed; argv: corpus, vocab, out, variant.
VARIANT = """
import sys
from pathlib import Path
import tfcli.tokenizer.training as tk
from tfcli.tokenizer.vocab import save_tokenizer
from tfcli.recipe.schema import TokenizerConfig
corpus, vocab, out, variant = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if variant == "joined":  # each block of lines as one space-joined sequence (exact for metaspace)
    wrap = tk._Progress.wrap
    tk._Progress.wrap = lambda self, blocks: (" ".join(filter(None, b)) for b in wrap(self, blocks))
if variant == "maxlen16":  # sentencepiece's default max_sentencepiece_length
    make = tk.trainer_for
    def capped(cfg):
        t = make(cfg)
        t.max_token_length = 16
        return t
    tk.trainer_for = capped
tok = tk.train_tokenizer([Path(corpus)], TokenizerConfig(vocab_size=vocab), show_progress=False)
save_tokenizer(tok, Path(out))
"""


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child and its threads) for one subprocess run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def tokens_per_line(kind: str, model: Path, lines: list[str]) -> tuple[int, float]:
    """(vocabulary size, mean tokens per line) of a trained model on `lines`."""
    if kind == "spm":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(model))
        return sp.get_piece_size(), sum(len(x) for x in sp.encode(lines)) / len(lines)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model))
    enc = tok.encode_batch(lines, add_special_tokens=False)
    return tok.get_vocab_size(), sum(len(e.ids) for e in enc) / len(lines)


def systems(
    corpus: Path, vocab: int, work: Path, variants: bool, only_spm: bool = False
) -> dict[str, tuple]:
    """name -> (command, env, model kind, model path)."""
    tfcli = str(Path(sys.executable).with_name("tfcli"))
    py = sys.executable
    out = {
        "sentencepiece": (
            [py, "-c", SPM, str(corpus), str(vocab), str(work / "spm")],
            {},
            "spm",
            work / "spm.model",
        ),
        "hf BpeTrainer": (
            [py, "-c", HF, str(corpus), str(vocab), str(work / "hf.json")],
            {},
            "hf",
            work / "hf.json",
        ),
        "tfcli tokenize": (
            [
                tfcli,
                "tokenize",
                str(corpus),
                "--vocab-size",
                str(vocab),
                "-o",
                str(work / "tfcli.json"),
            ],
            {"TFCLI_QUIET": "1"},
            "hf",
            work / "tfcli.json",
        ),
        "tfcli --trainer sentencepiece": (
            [
                tfcli,
                "tokenize",
                str(corpus),
                "--trainer",
                "sentencepiece",
                "--vocab-size",
                str(vocab),
                "-o",
                str(work / "tfcli-spm.json"),
            ],
            {"TFCLI_QUIET": "1"},
            "hf",
            work / "tfcli-spm.json",
        ),
    }
    if only_spm:  # sentencepiece's own trainer against tfcli driving it: the 1.2x goal
        out = {
            k: v for k, v in out.items() if k in ("sentencepiece", "tfcli --trainer sentencepiece")
        }
    if variants:
        runs = (
            ("default", {}),
            ("joined", {}),
            ("maxlen16", {}),
            ("1thread", {"RAYON_NUM_THREADS": "1"}),
        )
        for name, env in runs:
            model = work / f"v-{name}.json"
            cmd = [py, "-c", VARIANT, str(corpus), str(vocab), str(model), name]
            out[f"tfcli lib: {name}"] = (cmd, env, "hf", model)
    return out


def run(
    corpus: Path, vocabs: list[int], repeat: int, variants: bool, only_spm: bool = False
) -> list[dict]:
    with open(corpus, encoding="utf-8") as f:
        sample = [next(f).rstrip("\n") for _ in range(5000)]
    rows = []
    for vocab in vocabs:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            best: dict[str, list[float]] = {}
            chosen = systems(corpus, vocab, work, variants, only_spm)
            for r in range(repeat):
                for name, (cmd, env, _, _) in chosen.items():
                    wall, cpu = timed(cmd, env)
                    print(
                        f"  V={vocab} run {r + 1}/{repeat} {name:22s} wall {wall:7.2f}s cpu {cpu:7.2f}s",
                        flush=True,
                    )
                    old = best.get(name, [float("inf"), float("inf")])
                    best[name] = [min(old[0], wall), min(old[1], cpu)]
            for name, (_, _, kind, model) in chosen.items():
                size, tpl = tokens_per_line(kind, model, sample)
                rows.append(
                    {
                        "vocab": vocab,
                        "system": name,
                        "wall": best[name][0],
                        "cpu": best[name][1],
                        "vocab_out": size,
                        "tokens_per_line": tpl,
                    }
                )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| vocab | system | wall s | CPU s | wall / spm | CPU / spm | wall / HF | vocab out "
        "| tokens/line |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ref = {x["system"]: x for x in rows if x["vocab"] == r["vocab"]}
        spm = ref["sentencepiece"]
        hf = ref.get("hf BpeTrainer")
        vs_hf = f"{r['wall'] / hf['wall']:.2f}x" if hf else "-"
        lines.append(
            f"| {r['vocab']} | {r['system']} | {r['wall']:.2f} | {r['cpu']:.2f} "
            f"| {r['wall'] / spm['wall']:.2f}x | {r['cpu'] / spm['cpu']:.2f}x | {vs_hf} "
            f"| {r['vocab_out']} | {r['tokens_per_line']:.1f} |"
        )
    return "\n".join(lines)


def hardware() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def versions() -> str:
    import sentencepiece
    import tokenizers

    return f"tokenizers {tokenizers.__version__}, sentencepiece {sentencepiece.__version__}, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--corpus",
        type=Path,
        default=Path(tempfile.gettempdir()) / "tfcli-bench" / "corpus.txt",
        help="corpus file (generated if missing)",
    )
    ap.add_argument("--mb", type=float, default=20.0, help="corpus size when generating (MB)")
    ap.add_argument("--vocab", type=int, nargs="+", default=[8000, 32000])
    ap.add_argument("--repeat", type=int, default=1, help="runs per system; the best is kept")
    ap.add_argument("--variants", action="store_true", help="also time tfcli library variants")
    ap.add_argument(
        "--only-spm",
        action="store_true",
        help="time only sentencepiece and `tfcli tokenize --trainer sentencepiece`",
    )
    ap.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    args = ap.parse_args()
    # An installed tfcli has its bytecode compiled (pip does it at install time); an editable
    # checkout under PYTHONDONTWRITEBYTECODE=1 would recompile its modules on every run.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(HERE.parent / "tfcli")], check=True
    )
    if not args.corpus.is_file():
        print(f"generating {args.mb} MB corpus at {args.corpus} ...", flush=True)
        write_corpus(args.corpus, args.mb)
    n_lines = sum(1 for _ in open(args.corpus, "rb"))
    size = args.corpus.stat().st_size / 1e6
    load_before = os.getloadavg()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    rows = run(args.corpus, args.vocab, args.repeat, args.variants, args.only_spm)
    load_after = os.getloadavg()
    report = "\n".join(
        [
            f"Date: {started}; hardware: {hardware()}; {versions()}",
            f"Corpus: {args.corpus.name}, {size:.1f} MB, {n_lines:,} lines (benchmarks/corpus.py, seed 1234)",
            f"Command: python benchmarks/bench_tokenize.py {' '.join(sys.argv[1:])}",
            f"Load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, "
            f"after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}",
            "",
            table(rows),
        ]
    )
    print("\n" + report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
        (args.out.with_suffix(".json")).write_text(
            json.dumps(rows, indent=1) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
