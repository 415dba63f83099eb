"""`tfcli encode` end to end vs sentencepiece vs HF tokenizers, side by side, plus a memory check.

On the deterministic multilingual corpus of benchmarks/corpus.py (20 MB by default):

* tfcli: `tfcli encode --text CORPUS --tokenizer tok.json -o OUT --force` in a fresh process,
  wall clock from process start to exit: imports, line counting, tokenizing, writing the .bin/.idx
  shards and meta.json;
* sentencepiece: a BPE model of the same vocabulary size trained here (with --vocab-from
  sentencepiece, the one model every contender uses: tfcli and tokenizers read the
  tokenizer.json `tfcli tokenize --from-spm` makes of it, so all count the same ids), `sp.encode(lines,
  out_type=int, num_threads=2)` in this process on lines already read (reading the file is
  timed too, writing nothing);
* tokenizers: the same tokenizer.json as tfcli, `encode_batch` / `encode_batch_fast` in chunks
  of 10k lines in this process (rayon threads on every core), ids collected, nothing written.

Contenders alternate round after round, so load from other jobs on a shared machine hits all
alike; medians and best times are printed with tokens/s and ratios to sentencepiece, and the
CPU seconds each used (process and children, all threads), which a loaded machine disturbs
far less than wall time.

Memory: peak RSS of `tfcli encode` on the corpus and on one 10x larger, as the largest single
process (getrusage of a wrapper process) and as the whole process tree (workers included,
sampled every 20 ms from /proc). The 10x corpus must raise the peak by less than 20%.

Encoding is CPU work: there is no GPU variant. Run:

    python benchmarks/bench_encode.py                      # 20 MB, 200 MB for the memory check
    python benchmarks/bench_encode.py --mb 5 --big-mb 50 --rounds 3
    python benchmarks/bench_encode.py --vocab-from sentencepiece --spm-type unigram --skip-hf
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus import write_corpus  # noqa: E402

TFCLI = str(Path(sys.executable).with_name("tfcli"))


def _corpus(work: Path, mb: float) -> Path:
    path = work / f"corpus-{mb:g}mb.txt"
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        write_corpus(path, mb)
    return path


def _tfcli_tokenizer(corpus: Path, vocab: int, work: Path) -> Path:
    path = work / f"tok-{vocab}" / "tokenizer.json"
    if not path.exists():
        print(f"training the tfcli BPE tokenizer ({vocab}) ...", flush=True)
        cmd = [TFCLI, "tokenize", str(corpus), "--vocab-size", str(vocab), "-o", str(path)]
        subprocess.run(cmd, check=True, env={**os.environ, "TFCLI_QUIET": "1"})
    return path


def _sp_model(
    corpus: Path, vocab: int, work: Path, tfcli_ids: bool = False, model_type: str = "bpe"
) -> Path:
    import sentencepiece as spm

    prefix = work / (f"sp-{model_type}-{vocab}" + ("-tfcli-ids" if tfcli_ids else ""))
    # tfcli_ids: specials where tfcli needs them, so `tfcli tokenize --from-spm` can import it
    ids = dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3, user_defined_symbols=["<mask>"])
    if not prefix.with_suffix(".model").exists():
        print(f"training the sentencepiece {model_type} model ({vocab}) ...", flush=True)
        spm.SentencePieceTrainer.train(
            **(ids if tfcli_ids else {}),
            input=str(corpus),
            model_prefix=str(prefix),
            vocab_size=vocab,
            model_type=model_type,
            character_coverage=1.0,
            input_sentence_size=300_000,
            shuffle_input_sentence=True,
            num_threads=2,
            minloglevel=2,
        )
    return prefix.with_suffix(".model")


def _lines(corpus: Path) -> list[str]:
    with open(corpus, encoding="utf-8") as f:
        return f.read().splitlines()


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its waited-for children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_tfcli(corpus: Path, tok: Path, out: Path, workers: int | None) -> tuple[float, int]:
    cmd = [TFCLI, "encode", "--text", str(corpus), "--tokenizer", str(tok), "-o", str(out)]
    cmd += ["--force", "--min-len", "0"] + (["-j", str(workers)] if workers else [])
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "TFCLI_QUIET": "1"})
    dt = time.perf_counter() - t
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    return dt, meta["num_tokens"]["text"]


def run_sp(corpus: Path, model: Path) -> tuple[float, int]:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    t = time.perf_counter()
    ids = sp.encode(_lines(corpus), out_type=int, num_threads=2)
    dt = time.perf_counter() - t
    return dt, sum(map(len, ids))


def run_hf(corpus: Path, tok_path: Path, fast: bool) -> tuple[float, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    encode = tok.encode_batch_fast if fast else tok.encode_batch
    t = time.perf_counter()
    lines = _lines(corpus)
    n = 0
    for i in range(0, len(lines), 10_000):
        rows = [e.ids for e in encode(lines[i : i + 10_000], add_special_tokens=False)]
        n += sum(map(len, rows))
    return time.perf_counter() - t, n


def _tree_rss_kb(root: int) -> int:
    """Sum of VmRSS over `root` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parents[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/status") as f:
                rss[int(d)] = next((int(x.split()[1]) for x in f if x.startswith("VmRSS:")), 0)
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    return sum(rss.get(p, 0) for p in tree)


def peak_rss(corpus: Path, tok: Path, out: Path, workers: int | None) -> tuple[int, int, float]:
    """(largest single process KiB, whole tree KiB sampled, seconds) for one `tfcli encode`."""
    inner = [TFCLI, "encode", "--text", str(corpus), "--tokenizer", str(tok), "-o", str(out)]
    inner += ["--force", "--min-len", "0"] + (["-j", str(workers)] if workers else [])
    wrapper = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", wrapper, *inner],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TFCLI_QUIET": "1"},
    )
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    stdout, _ = proc.communicate()
    th.join()
    if proc.returncode:
        raise SystemExit(f"tfcli encode failed ({proc.returncode})")
    return int(stdout.strip().splitlines()[-1]), peak[0], time.perf_counter() - t


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=20.0, help="corpus size in MB (default 20)")
    ap.add_argument("--big-mb", type=float, default=200.0, help="10x corpus for the memory check")
    ap.add_argument("--vocab", type=int, default=8000, help="vocabulary size of both models")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per contender")
    ap.add_argument("--workers", type=int, default=None, help="tfcli encode -j (default: auto)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tfcli-bench-encode"))
    ap.add_argument("--skip-memory", action="store_true", help="no 10x memory check")
    ap.add_argument(
        "--vocab-from",
        choices=["tokenizers", "sentencepiece"],
        default="tokenizers",
        help="sentencepiece: tfcli and tokenizers encode with the tokenizer.json imported "
        "(`tfcli tokenize --from-spm`) from sentencepiece's own model",
    )
    ap.add_argument(
        "--spm-type",
        choices=["bpe", "unigram"],
        default="bpe",
        help="with --vocab-from sentencepiece: the model type sentencepiece trains",
    )
    ap.add_argument(
        "--skip-hf",
        action="store_true",
        help="time only tfcli and sentencepiece (the goal's pair; HF's two take most of a run)",
    )
    ap.add_argument("--out", type=Path, default=None, help="append a markdown report here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = _corpus(args.work, args.mb)
    if args.vocab_from == "sentencepiece":  # one vocabulary for all: the ids are identical
        sp_model = _sp_model(corpus, args.vocab, args.work, True, args.spm_type)
        tok = args.work / f"tok-spm-{args.spm_type}-{args.vocab}" / "tokenizer.json"
        cmd = [TFCLI, "tokenize", "--from-spm", str(sp_model), "-o", str(tok)]
        subprocess.run(cmd, check=True, env={**os.environ, "TFCLI_QUIET": "1"})
    else:
        tok = _tfcli_tokenizer(corpus, args.vocab, args.work)
        sp_model = _sp_model(corpus, args.vocab, args.work)
    out = args.work / "encoded"
    contenders = {
        "tfcli encode (end to end, writes shards)": lambda: run_tfcli(
            corpus, tok, out, args.workers
        ),
        "sentencepiece encode(num_threads=2)": lambda: run_sp(corpus, sp_model),
        "tokenizers encode_batch": lambda: run_hf(corpus, tok, fast=False),
        "tokenizers encode_batch_fast": lambda: run_hf(corpus, tok, fast=True),
    }
    if args.skip_hf:
        contenders = {k: v for k, v in contenders.items() if not k.startswith("tokenizers")}
    times: dict[str, list[float]] = {k: [] for k in contenders}
    cpus: dict[str, list[float]] = {k: [] for k in contenders}
    tokens: dict[str, int] = {}
    load_before = _load()
    for r in range(args.rounds):
        for name, fn in contenders.items():
            c = _cpu()
            dt, n = fn()
            cpus[name].append(_cpu() - c)
            times[name].append(dt)
            tokens[name] = n
            print(
                f"round {r + 1}: {name}: {dt:.2f} s, {n / dt / 1e6:.2f} M tokens/s, "
                f"{cpus[name][-1]:.2f} CPU s",
                flush=True,
            )
    load_after = _load()
    sp_name = "sentencepiece encode(num_threads=2)"
    sp_med = statistics.median(times[sp_name])
    sp_cpu = statistics.median(cpus[sp_name])
    rows = []
    for name, ts in times.items():
        med, best, cpu = statistics.median(ts), min(ts), statistics.median(cpus[name])
        rate = tokens[name] / med / 1e6
        rows.append(
            f"| {name} | {tokens[name]:,} | {med:.2f} | {best:.2f} | {rate:.2f} "
            f"| {sp_med / med:.2f} | {cpu:.2f} | {sp_cpu / cpu:.2f} |"
        )
    report = [
        f"## {args.mb:g} MB corpus, vocab {args.vocab}, {args.rounds} rounds ({date.today()})",
        "",
        f"- Load average before/after: {load_before} / {load_after} (2 cores shared)",
        f"- tfcli workers: {args.workers or 'auto'}; vocabulary from {args.vocab_from}"
        + (f" ({args.spm_type})" if args.vocab_from == "sentencepiece" else "")
        + ("; tokens differ between models (own vocab)" if args.vocab_from == "tokenizers" else ""),
        "",
        "| contender | tokens | median s | best s | M tokens/s (median) | speed vs sentencepiece "
        "| CPU s (median) | CPU efficiency vs sentencepiece |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    if not args.skip_memory:
        big = _corpus(args.work, args.big_mb)
        small_rss = peak_rss(corpus, tok, out, args.workers)
        big_rss = peak_rss(big, tok, args.work / "encoded-big", args.workers)
        grow_single = big_rss[0] / small_rss[0] - 1
        grow_tree = big_rss[1] / small_rss[1] - 1
        report += [
            "",
            "| corpus | peak RSS largest process MiB | peak RSS process tree MiB | seconds |",
            "|---|---:|---:|---:|",
            f"| {args.mb:g} MB | {small_rss[0] / 1024:.0f} | {small_rss[1] / 1024:.0f} | {small_rss[2]:.1f} |",
            f"| {args.big_mb:g} MB | {big_rss[0] / 1024:.0f} | {big_rss[1] / 1024:.0f} | {big_rss[2]:.1f} |",
            "",
            f"- Peak RSS growth for {args.big_mb / args.mb:g}x the input: largest process "
            f"{100 * grow_single:+.1f}%, process tree {100 * grow_tree:+.1f}% (limit +20%)",
        ]
    text = "\n".join(report)
    print("\n" + text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
