"""`tfcli encode` end to end vs sentencepiece (vs HF tokenizers), every vocabulary kind, side by side.

On the deterministic multilingual corpus of benchmarks/corpus.py, for each vocabulary kind
(`--kinds`, default all three) and corpus size (`--sizes`, default 20 and 200 MB):

* tokenizers: a BPE tokenizer trained by `tfcli tokenize` (tfcli's default); sentencepiece
  encodes with its own BPE model of the same vocabulary size trained here (other ids);
* spm-bpe / spm-unigram: one sentencepiece model (trained with tfcli's special ids) used by
  both: sentencepiece encodes with it, tfcli with the tokenizer.json `tfcli tokenize --from-spm`
  makes of it (the .model stays beside it), so both count the same ids.

Contenders, alternating round after round so load from other jobs hits all alike:

* tfcli: `tfcli encode --text CORPUS --tokenizer tok.json -o OUT --force` in a fresh process
  (`-j auto` = one worker per core), wall clock from process start to exit: imports, line
  counting, tokenizing, writing the .bin/.idx shards and meta.json (tfcli's bytecode compiled
  first, as an installed package has it);
* `--with-fallback`: the same with TFCLI_NATIVE=0 (HF's model for unseen words, no C extension),
  on the smallest corpus;
* sentencepiece: `sp.encode(lines, out_type=int, num_threads=2)` in this process on the lines
  read from the file (reading timed too, writing nothing);
* `--with-hf`: tokenizers' `encode_batch` / `encode_batch_fast` in chunks of 10k lines.

Medians of wall seconds and of CPU seconds (process and children, all threads: what a loaded
machine disturbs far less) are printed with their ratios to sentencepiece (>= 1: tfcli as fast).

Agreement (unless --no-check): the ids tfcli wrote for the smallest corpus, line by line,
against HF tokenizers' `encode_batch` on the same tokenizer.json (and the number of ids against
sentencepiece's for the spm kinds). Memory (unless --skip-memory): peak RSS of `tfcli encode`
on the smallest and largest size, as the largest single process and as the process tree
(sampled every 20 ms); the larger corpus must raise the peak by less than 20%.

Encoding is CPU work: there is no GPU variant. Run:

    python benchmarks/bench_encode.py                              # all kinds, 20 and 200 MB
    python benchmarks/bench_encode.py --kinds spm-unigram --sizes 5 --rounds 2 --skip-memory
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


def run_tfcli(
    corpus: Path, tok: Path, out: Path, workers: int | None, native: bool = True
) -> tuple[float, int]:
    cmd = [TFCLI, "encode", "--text", str(corpus), "--tokenizer", str(tok), "-o", str(out)]
    cmd += ["--force", "--min-len", "0"] + (["-j", str(workers)] if workers else [])
    env = {**os.environ, "TFCLI_QUIET": "1", "TFCLI_NATIVE": "1" if native else "0"}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
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


KINDS = ("tokenizers", "spm-bpe", "spm-unigram")


def _vocabulary(kind: str, corpus: Path, vocab: int, work: Path) -> tuple[Path, Path]:
    """(tfcli's tokenizer.json, sentencepiece's .model) for a vocabulary kind."""
    if kind == "tokenizers":
        return _tfcli_tokenizer(corpus, vocab, work), _sp_model(corpus, vocab, work)
    spm_type = kind.removeprefix("spm-")
    sp_model = _sp_model(corpus, vocab, work, True, spm_type)
    tok = work / f"tok-spm-{spm_type}-{vocab}" / "tokenizer.json"
    if not tok.exists():
        cmd = [TFCLI, "tokenize", "--from-spm", str(sp_model), "-o", str(tok)]
        subprocess.run(cmd, check=True, env={**os.environ, "TFCLI_QUIET": "1"})
    return tok, sp_model


def check_agreement(corpus: Path, tok: Path, out: Path, sp_model: Path | None) -> str:
    """tfcli's shard (written by the last run on `corpus`) against HF tokenizers line by line."""
    import numpy as np
    from tokenizers import Tokenizer

    sys.path.insert(0, str(ROOT))
    from tfcli.data.split import open_split

    arr = open_split(out).text
    lines = _lines(corpus)
    tk = Tokenizer.from_file(str(tok))
    same = total = 0
    for i in range(0, len(lines), 10_000):
        encs = tk.encode_batch(lines[i : i + 10_000], add_special_tokens=False)
        for j, e in enumerate(encs):
            total += 1
            same += np.array_equal(arr[i + j], np.asarray(e.ids, dtype=arr.ids.dtype))
    hf_ids = "" if len(arr) == len(lines) else f" (tfcli kept {len(arr)} of {len(lines)} lines)"
    text = (
        f"{same:,} / {total:,} lines identical to HF tokenizers ({100 * same / total:.3f}%){hf_ids}"
    )
    if sp_model is not None:
        import sentencepiece as spm

        n_sp = sum(map(len, spm.SentencePieceProcessor(model_file=str(sp_model)).encode(lines)))
        text += f"; {arr.num_tokens:,} ids, sentencepiece {n_sp:,}"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma list of " + ", ".join(KINDS))
    ap.add_argument("--sizes", default="20,200", help="corpus sizes in MB, comma list")
    ap.add_argument("--vocab", type=int, default=8000, help="vocabulary size of all models")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per contender")
    ap.add_argument("--workers", type=int, default=None, help="tfcli encode -j (default: auto)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/tfcli-bench-encode"))
    ap.add_argument("--skip-memory", action="store_true", help="no peak-memory check")
    ap.add_argument("--no-check", action="store_true", help="no id agreement check")
    ap.add_argument("--with-hf", action="store_true", help="also time HF encode_batch(_fast)")
    ap.add_argument(
        "--with-fallback", action="store_true", help="also time tfcli with TFCLI_NATIVE=0"
    )
    ap.add_argument("--out", type=Path, default=None, help="append a markdown report here")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if bad := [k for k in kinds if k not in KINDS]:
        raise SystemExit(f"--kinds: unknown {bad}; choose from {', '.join(KINDS)}")
    sizes = [float(x) for x in args.sizes.split(",") if x]
    args.work.mkdir(parents=True, exist_ok=True)
    # An installed tfcli has its bytecode compiled (pip does it at install time); an editable
    # checkout under PYTHONDONTWRITEBYTECODE=1 would recompile ~30 modules (~0.1 s) every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "tfcli")], check=True)
    corpora = {mb: _corpus(args.work, mb) for mb in sizes}
    vocabs = {k: _vocabulary(k, corpora[sizes[0]], args.vocab, args.work) for k in kinds}
    out = args.work / "encoded"
    cells: dict[tuple[str, float], dict] = {}
    for k in kinds:
        tok, sp_model = vocabs[k]
        for mb, corpus in corpora.items():
            c = {
                "tfcli": lambda corpus=corpus, tok=tok: run_tfcli(corpus, tok, out, args.workers),
                "sentencepiece": lambda corpus=corpus, m=sp_model: run_sp(corpus, m),
            }
            if args.with_fallback and mb == sizes[0]:
                c["tfcli, TFCLI_NATIVE=0"] = lambda corpus=corpus, tok=tok: run_tfcli(
                    corpus, tok, out, args.workers, native=False
                )
            if args.with_hf:
                c["tokenizers encode_batch"] = lambda corpus=corpus, tok=tok: run_hf(
                    corpus, tok, fast=False
                )
                c["tokenizers encode_batch_fast"] = lambda corpus=corpus, tok=tok: run_hf(
                    corpus, tok, fast=True
                )
            cells[(k, mb)] = {
                n: {"fn": f, "wall": [], "cpu": [], "tokens": 0} for n, f in c.items()
            }
    load_before = _load()
    for r in range(args.rounds):
        for (k, mb), cell in cells.items():
            for name, res in cell.items():
                c0 = _cpu()
                dt, n = res["fn"]()
                res["cpu"].append(_cpu() - c0)
                res["wall"].append(dt)
                res["tokens"] = n
                print(
                    f"round {r + 1}: {k} {mb:g} MB {name}: {dt:.2f} s, {res['cpu'][-1]:.2f} CPU s,"
                    f" {n:,} tokens, load {_load()}",
                    flush=True,
                )
    load_after = _load()
    med = statistics.median
    report = [
        f"### {', '.join(kinds)}; {', '.join(f'{mb:g}' for mb in sizes)} MB; vocab {args.vocab}; "
        f"{args.rounds} rounds ({date.today()})",
        "",
        f"- Load average before/after: {load_before} / {load_after} ({os.cpu_count()} cores)",
        f"- tfcli workers: {args.workers or 'auto'}; sentencepiece num_threads=2",
        "",
        "| vocabulary | MB | contender | tokens | median s | best s | CPU s (median) "
        "| speed vs spm | CPU vs spm |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (k, mb), cell in cells.items():
        sp = cell["sentencepiece"]
        for name, res in cell.items():
            w, cpu = med(res["wall"]), med(res["cpu"])
            report.append(
                f"| {k} | {mb:g} | {name} | {res['tokens']:,} | {w:.2f} | {min(res['wall']):.2f} "
                f"| {cpu:.2f} | {med(sp['wall']) / w:.2f} | {med(sp['cpu']) / cpu:.2f} |"
            )
    if not args.no_check:
        report.append("")
        small = corpora[sizes[0]]
        for k in kinds:
            tok, sp_model = vocabs[k]
            run_tfcli(small, tok, out, args.workers)
            agree = check_agreement(small, tok, out, None if k == "tokenizers" else sp_model)
            report.append(f"- ids, {k}, {sizes[0]:g} MB: {agree}")
            print(report[-1], flush=True)
    if not args.skip_memory and len(sizes) > 1:
        report += [
            "",
            "| vocabulary | MB | peak RSS largest process MiB | peak RSS process tree MiB | seconds |",
            "|---|---:|---:|---:|---:|",
        ]
        for k in kinds:
            tok = vocabs[k][0]
            a = peak_rss(corpora[sizes[0]], tok, out, args.workers)
            b = peak_rss(corpora[sizes[-1]], tok, args.work / "encoded-big", args.workers)
            for mb, x in ((sizes[0], a), (sizes[-1], b)):
                report.append(
                    f"| {k} | {mb:g} | {x[0] / 1024:.0f} | {x[1] / 1024:.0f} | {x[2]:.1f} |"
                )
            report.append(
                f"| {k} | growth | {100 * (b[0] / a[0] - 1):+.1f}% | {100 * (b[1] / a[1] - 1):+.1f}% "
                "| (limit +20%) |"
            )
    text = "\n".join(report)
    print("\n" + text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
