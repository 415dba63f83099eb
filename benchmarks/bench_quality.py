"""Translation quality at the same wall-clock budget: `tfcli train` vs HF MarianMTModel + a plain
PyTorch loop, on real English -> French text (the machine's gettext catalogs, gettext_corpus.py).

One joint BPE vocabulary is trained and the corpus encoded with the tfcli CLI (`tfcli tokenize`,
`tfcli encode`, a recipe written to the work dir). Then the same architecture (MarianConfig set
to tfcli's shape, as in bench_train.py: post-norm, ReLU, sinusoidal positions, scaled tied
embeddings, dropout 0.1) is trained twice AT THE SAME TIME, one CPU thread each, so that load on
a shared machine hits both alike:

* tfcli: `tfcli train RECIPE` in a subprocess (OMP_NUM_THREADS=1), stopped by train.max_minutes;
* the peer: MarianMTModel in this process (torch.set_num_threads(1)) over the SAME batches (the
  same TokenBudgetSampler over the same encoded split and seed, reshuffled per epoch), with label
  smoothing 0.1, Adam (0.9, 0.98, 1e-9), the same inverse-sqrt warmup and peak rate, clipping at
  1.0, stopped at the same wall-clock budget.

Budget accounting: the budget is training time only, on both sides. tfcli's clock starts when
its loop starts (Trainer.run, after data and model set-up) and the peer's clock starts when tfcli's
does (it waits for RUN_DIR/metrics.jsonl, which the loop opens first), so the two budgets
overlap. Validation during training is off (train.eval_every beyond reach), so neither side spends
budget on it; each side's last update is the one during which the budget ran out. Afterwards,
outside the budget, tfcli's loop computes the validation loss and saves its checkpoint, and the
peer's validation loss is computed the same way (same batches, same loss).

The test split is then decoded greedily by both (tfcli: `tfcli decode --mode greedy`; the peer:
`generate(num_beams=1)`, the same length cap of 1.5 * source + 10 tokens, <pad> <s> <mask>
suppressed), detokenized by the same tokenizer and scored with sacreBLEU against the raw
references. A "copy the source" row shows how much BLEU untranslated tokens (option names,
format strings) give for free on this data.

    python benchmarks/bench_quality.py --minutes 8 --write benchmarks/results/quality.md
    python benchmarks/bench_quality.py --minutes 0.5 --max-train 5000      # smoke test
    python benchmarks/bench_quality.py --device cuda --minutes 10          # GPU-ready, untested
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import cpu_name  # noqa: E402
from gettext_corpus import build_corpus  # noqa: E402

from tfcli.data.split import TokenBudgetSampler, collate_parallel, open_split, parallel_costs  # noqa: E402
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD  # noqa: E402

TFCLI = [sys.executable, "-m", "tfcli"]
MAX_POSITIONS = 512


# --- data ------------------------------------------------------------------------------------


def write_recipe(args, work: Path, corpus: Path) -> Path:
    """The run's recipe: data, one joint BPE vocabulary, the shape, the optimizer, the budget."""
    lang = args.lang
    recipe = {
        "run_dir": str(work / "run"),
        "data": {
            "src": [str(corpus / "train.en")], "tgt": [str(corpus / f"train.{lang}")],
            "valid_src": [str(corpus / "valid.en")], "valid_tgt": [str(corpus / f"valid.{lang}")],
            "max_len": 256,
        },
        "tokenizer": {"type": "bpe", "vocab_size": args.vocab, "joint": True},
        "model": {
            "d_model": args.d_model, "n_heads": args.heads, "d_ff": args.d_ff,
            "encoder_layers": args.layers, "decoder_layers": args.layers, "dropout": 0.1,
            "attention_dropout": 0.0, "share_embeddings": True, "max_positions": MAX_POSITIONS,
            "init": args.init,
        },
        "optim": {"lr": args.lr, "warmup_steps": args.warmup, "clip_norm": 1.0},
        "train": {
            "seed": args.seed, "max_tokens": args.max_tokens, "max_steps": 0,
            "max_minutes": args.minutes, "eval_every": 10**9, "eval_bleu": False,
            "log_every": args.log_every, "keep_last": 1, "device": args.device,
            "precision": "bf16" if args.bf16 else "fp32",
        },
        "decode": {"mode": "greedy", "max_len_a": 1.5, "max_len_b": 10, "min_len": 1},
    }  # fmt: skip
    path = work / "quality.yaml"
    path.write_text(
        "# bench_quality.py: tfcli vs MarianMTModel at the same wall-clock budget\n"
        + yaml.safe_dump(recipe, sort_keys=False),
        encoding="utf-8",
    )
    return path


class Job:
    """A tfcli command running in a subprocess, its output going to a log file."""

    def __init__(self, words: list[str], log: Path, env: dict | None = None) -> None:
        self.words, self.log_path = words, log
        self.log = open(log, "w", encoding="utf-8")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(TFCLI + words, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=env)  # fmt: skip

    def finish(self) -> float:
        """Wait for it; its seconds. Exits with the log's tail when it failed."""
        rc = self.proc.wait()
        seconds = time.perf_counter() - self.t0
        self.log.close()
        if rc != 0:
            tail = self.log_path.read_text(encoding="utf-8")[-3000:]
            sys.exit(f"tfcli {' '.join(self.words)} failed (exit {rc}):\n{tail}")
        return seconds


def one_thread_env(threads: int) -> dict:
    """The environment of a tfcli subprocess: torch then uses `threads` intra-op threads."""
    return dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))


def target_tokens(train, sampler: TokenBudgetSampler, steps: int) -> int:
    """Non-pad target tokens (</s> included) in the first `steps` batches of the stream."""
    total, epoch = 0, 0
    while steps > 0:
        for idx in sampler.epoch_batches(epoch)[:steps]:
            total += int(train.tgt.lengths[idx].sum()) + len(idx)
            steps -= 1
        epoch += 1
    return total


# --- the peer --------------------------------------------------------------------------------


def marian_model(args, vocab: int):
    """MarianMTModel in tfcli's shape (bench_train.py's configuration)."""
    from transformers import MarianConfig, MarianMTModel

    cfg = MarianConfig(vocab_size=vocab, decoder_vocab_size=vocab, d_model=args.d_model,
                       encoder_layers=args.layers, decoder_layers=args.layers,
                       encoder_attention_heads=args.heads, decoder_attention_heads=args.heads,
                       encoder_ffn_dim=args.d_ff, decoder_ffn_dim=args.d_ff,
                       activation_function="relu", dropout=0.1, attention_dropout=0.0,
                       activation_dropout=0.0, scale_embedding=True, pad_token_id=PAD,
                       eos_token_id=EOS, decoder_start_token_id=BOS, forced_eos_token_id=EOS,
                       max_position_embeddings=MAX_POSITIONS,
                       share_encoder_decoder_embeddings=True)  # fmt: skip
    torch.manual_seed(args.seed)  # tfcli train seeds its initialisation with train.seed too
    return MarianMTModel(cfg).to(args.device)


def marian_loss(model, b: dict, dev: torch.device, bf16: bool) -> tuple[torch.Tensor, ...]:
    """Summed label-smoothed loss, summed NLL, non-pad target tokens of one collated batch."""
    src, tgt = b["src"].to(dev), b["tgt"].to(dev)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=src, attention_mask=src != PAD, decoder_input_ids=tgt_in,
                       decoder_attention_mask=tgt_in != PAD, use_cache=False).logits  # fmt: skip
    flat, gold = logits.flatten(0, 1).float(), tgt_out.flatten()
    loss = F.cross_entropy(flat, gold, ignore_index=PAD, label_smoothing=0.1, reduction="sum")
    with torch.no_grad():
        nll = F.cross_entropy(flat, gold, ignore_index=PAD, reduction="sum")
    return loss, nll, (tgt_out != PAD).sum()


def marian_train(args, model, train, started: float, log: Path) -> dict:
    """Train from `started` (monotonic clock) until the budget is spent; the loop a user writes.

    Batches: tfcli's sampler over the same split with the same seed, so both sides see the same
    batch sequence. Writes a metrics line every `log_every` updates (loss over that window).
    """
    dev = torch.device(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9,
                           fused=dev.type in ("cpu", "cuda"))  # fmt: skip
    w = max(args.warmup, 1)  # tfcli's inverse_sqrt: factor of update s+1
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / w, (w / (s + 1)) ** 0.5))
    sampler = TokenBudgetSampler(parallel_costs(train), args.max_tokens, args.seed)
    deadline = started + args.minutes * 60
    step = seen = epoch = 0
    curve: dict[int, float] = {}  # update -> loss of the window ending there
    window = torch.zeros(3, device=dev)  # smoothed loss, nll, tokens since the last log line
    last: dict = {}
    model.train()
    with open(log, "w", encoding="utf-8") as f:
        while True:
            batches = sampler.epoch_batches(epoch)
            for pos, idx in enumerate(batches, 1):
                loss, nll, tokens = marian_loss(model, collate_parallel(train, idx), dev, args.bf16)
                (loss / tokens).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                window += torch.stack([loss.detach(), nll, tokens.float()])
                step, seen = step + 1, seen + int(train.tgt.lengths[idx].sum()) + len(idx)
                if step % args.log_every == 0:
                    lo, nl, tok = window.tolist()
                    last = {"step": step, "epoch": round(epoch + pos / len(batches), 4),
                            "loss": lo / tok, "nll": nl / tok,
                            "elapsed": round(time.monotonic() - started, 2)}  # fmt: skip
                    curve[step] = last["loss"]
                    f.write(json.dumps(last) + "\n")
                    f.flush()
                    window.zero_()
                if time.monotonic() >= deadline:
                    if dev.type == "cuda":
                        torch.cuda.synchronize()  # count the queued work in the seconds
                    return {"steps": step, "epochs": round(epoch + pos / len(batches), 4),
                            "tokens": seen, "train_loss": last.get("loss"),
                            "seconds": time.monotonic() - started, "sampler": sampler,
                            "curve": curve}  # fmt: skip
            epoch += 1


@torch.no_grad()
def marian_valid(args, model, valid) -> dict:
    """Validation loss and NLL per target token, over tfcli's validation batches."""
    dev = torch.device(args.device)
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    costs = parallel_costs(valid)
    for idx in TokenBudgetSampler(costs, args.max_tokens, 0, shuffle=False).epoch_batches(0):
        loss, nll, tokens = marian_loss(model, collate_parallel(valid, idx), dev, args.bf16)
        sums += torch.stack([loss, nll, tokens.float()]).double().cpu()
    lo, nl, tok = sums.tolist()
    return {"loss": lo / tok, "nll": nl / tok}


# --- decoding and scoring --------------------------------------------------------------------


def max_len(src_len: int) -> int:
    """tfcli's greedy length cap (decode.max_len_a 1.5, max_len_b 10), within the positions."""
    return min(int(1.5 * src_len + 10), MAX_POSITIONS - 1)


@torch.no_grad()
def marian_decode(args, model, tok, lines: list[str]) -> tuple[list[str], float]:
    """Greedy generate() over length-sorted token-budget batches; texts and seconds."""
    from tfcli.decoding.translate import pad_batch, token_batches

    dev = torch.device(args.device)
    model.eval()
    t = time.perf_counter()
    src_ids = [[*e.ids[: MAX_POSITIONS - 1], EOS] for e in tok.encode_batch(lines)]
    hyps: list[list[int]] = [[] for _ in lines]
    for batch in token_batches([len(s) for s in src_ids], args.decode_max_tokens):
        src = pad_batch([src_ids[i] for i in batch], dev)
        caps = [max_len(len(src_ids[i])) for i in batch]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
            seqs = model.generate(
                input_ids=src, attention_mask=src != PAD, num_beams=1, do_sample=False,
                max_new_tokens=max(caps) + 1, min_new_tokens=1, suppress_tokens=[PAD, BOS, MASK],
                decoder_start_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
            )  # fmt: skip
        for i, cap, row in zip(batch, caps, seqs[:, 1:].tolist(), strict=True):
            row = row[: row.index(EOS)] if EOS in row else row
            hyps[i] = row[:cap]  # a per-sentence cap, as tfcli applies it
    texts = tok.decode_batch(hyps, skip_special_tokens=True)
    return texts, time.perf_counter() - t


def start_tfcli_decode(args, checkpoint: Path, src: Path, out: Path, log: Path) -> Job:
    words = ["decode", str(checkpoint), "-i", str(src), "-o", str(out), "--mode", "greedy",
             "--device", args.device, "--threads", str(args.threads),
             "--max-tokens", str(args.decode_max_tokens)]  # fmt: skip
    return Job(words, log, one_thread_env(args.threads))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def tfcli_result(run_dir: Path) -> dict:
    """Steps, epochs, training seconds, last train-window loss, validation loss of the run."""
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints.steps import list_checkpoints

    last = list_checkpoints(run_dir)[-1]
    meta = ckpt.read_meta(last)
    recs = read_jsonl(run_dir / "metrics.jsonl")
    train = [r for r in recs if r["split"] == "train"]
    curve = {r["step"]: r["loss"] for r in train}
    valid = [r for r in recs if r["split"] == "valid"]
    return {
        "checkpoint": last, "steps": meta["step"], "epochs": meta["epoch"],
        "seconds": meta["train_seconds"], "train_loss": train[-1]["loss"] if train else None,
        "valid": {"loss": valid[-1]["loss"], "nll": valid[-1]["nll"]} if valid else {},
        "curve": curve,
    }  # fmt: skip


# --- the run ---------------------------------------------------------------------------------


def train_both(args, work: Path, recipe: Path, vocab: int) -> tuple[dict, dict, object]:
    """Both trainings at once; (tfcli result, peer result, peer model)."""
    run_dir = work / "run"
    train = open_split(run_dir / "data" / "train")
    valid = open_split(run_dir / "data" / "valid")
    model = marian_model(args, vocab)  # built before tfcli starts: its clock must not wait
    metrics = run_dir / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    job = Job(["train", str(recipe), "--force"], work / "train.log", one_thread_env(args.threads))
    while not metrics.exists():  # tfcli's loop opens it when its clock starts
        if job.proc.poll() is not None:
            job.finish()
            sys.exit("tfcli train ended before its training loop started; see train.log")
        time.sleep(0.05)
    started = time.monotonic()
    print(f"training both sides for {args.minutes} min ...", file=sys.stderr, flush=True)
    peer = marian_train(args, model, train, started, work / "marian.metrics.jsonl")
    job.finish()
    peer["valid"] = marian_valid(args, model, valid)
    ours = tfcli_result(run_dir)
    ours["tokens"] = target_tokens(train, peer["sampler"], ours["steps"])
    assert target_tokens(train, peer["sampler"], peer["steps"]) == peer["tokens"]
    return ours, peer, model


def decode_both(args, work: Path, corpus: Path, ours: dict, model, tok) -> dict:
    """Greedy test translations of both (at the same time), scored; plus copying the source."""
    from tfcli.decoding.metrics import bleu_chrf
    from tfcli.textio import iter_lines

    src = corpus / "test.en"
    lines = list(iter_lines(src))
    refs = list(iter_lines(corpus / f"test.{args.lang}"))
    out = work / f"test.tfcli.{args.lang}"
    job = start_tfcli_decode(args, ours["checkpoint"], src, out, work / "decode.log")
    peer_texts, peer_seconds = marian_decode(args, model, tok, lines)
    tfcli_seconds = job.finish()
    (work / f"test.marian.{args.lang}").write_text("\n".join(peer_texts) + "\n", encoding="utf-8")
    ours_texts = list(iter_lines(out))
    return {
        "tfcli": {**bleu_chrf(ours_texts, refs), "seconds": tfcli_seconds},
        "marian": {**bleu_chrf(peer_texts, refs), "seconds": peer_seconds},
        "copy": bleu_chrf(lines, refs),
    }


def git_rev() -> str:
    """The tfcli commit measured (+ "-dirty" when the tree has uncommitted changes)."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "tfcli"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def report(args, manifest: dict, prep: dict, ours: dict, peer: dict, scores: dict) -> str:
    sp = manifest["splits"]
    hw = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"{cpu_name()}, {os.cpu_count()} cores"
    )
    lines = [
        f"hardware: {hw}; {args.threads} thread(s) per side, both sides at once; "
        f"torch {torch.__version__}; tfcli {git_rev()}; {datetime.date.today()}",
        f"command: python benchmarks/bench_quality.py {' '.join(args.argv)}".rstrip(),
        f"corpus: gettext en->{args.lang}, {len(manifest['catalogs'])} catalogs, "
        f"{manifest['counts']['messages']:,} messages -> train {sp['train']['pairs']:,} / valid "
        f"{sp['valid']['pairs']} / test {sp['test']['pairs']} pairs "
        f"({sp['train']['words_en']:,} English training words); sha256 {manifest['sha256']}",
        f"tokenizer: joint BPE, {prep['vocab']:,} pieces; train split after length filters "
        f"{prep['train_pairs']:,} pairs; tokenize {prep['tokenize_s']:.0f} s, encode "
        f"{prep['encode_s']:.0f} s",
        f"tfcli model.init {args.init}; shape: d_model {args.d_model}, {args.heads} heads, d_ff {args.d_ff}, "
        f"{args.layers}+{args.layers} layers, dropout 0.1, tied embeddings; max_tokens "
        f"{args.max_tokens}; Adam lr {args.lr:g}, inverse-sqrt warmup {args.warmup}; "
        f"{'bf16' if args.bf16 else 'fp32'}; budget {args.minutes:g} min of training per side",
        "",
        "| side | updates | epochs | target tokens seen | target tokens/s | train loss (last "
        f"{args.log_every} updates) | valid loss | valid ppl | test BLEU | test chrF | "
        "greedy decode s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in (("tfcli", ours), ("marian", peer)):
        s = scores[name]
        loss = f"{r['train_loss']:.3f}" if r["train_loss"] is not None else "-"
        v = r["valid"]
        lines.append(
            f"| {name} | {r['steps']:,} | {r['epochs']:.2f} | {r['tokens']:,} | "
            f"{r['tokens'] / r['seconds']:,.0f} | {loss} | "
            f"{v['loss']:.3f} | {np.exp(v['nll']):.1f} | {s['bleu']:.1f} | {s['chrf']:.1f} | "
            f"{s['seconds']:.0f} |"
        )
    c = scores["copy"]
    lines.append(
        f"| copy the source | - | - | - | - | - | - | - | {c['bleu']:.1f} | {c['chrf']:.1f} | - |"
    )
    lines += ["", "train loss (label-smoothed, per target token) by update:"]
    for name, r in (("tfcli", ours), ("marian", peer)):
        steps = sorted(r["curve"])
        if len(steps) > 12:  # 12 points, evenly spaced, the last included
            steps = [steps[round(j * (len(steps) - 1) / 11)] for j in range(12)]
        points = ", ".join(f"{k}: {r['curve'][k]:.2f}" for k in steps)
        lines.append(f"- {name}: {points or '-'}")
    lines += [
        "",
        f"training seconds: tfcli {ours['seconds']:.1f}, marian {peer['seconds']:.1f}; "
        f"BLEU tfcli - marian: {scores['tfcli']['bleu'] - scores['marian']['bleu']:+.1f}",
        f"sacreBLEU: {scores['tfcli']['bleu_signature']}; {scores['tfcli']['chrf_signature']}",
    ]
    return "\n".join(lines)


def prepare(args, work: Path) -> tuple[dict, Path, dict]:
    """Corpus, recipe, tokenizer and encoded splits (tfcli CLI); (manifest, recipe, prep facts)."""
    from tfcli.data.split import read_meta

    print(f"corpus and tokenizer in {work} ...", file=sys.stderr, flush=True)
    manifest = build_corpus(work / "corpus", args.lang, max_train=args.max_train)
    recipe = write_recipe(args, work, work / "corpus")
    env = one_thread_env(2)  # data preparation is not part of the comparison: both cores
    tokenize_s = Job(["tokenize", str(recipe)], work / "tokenize.log", env).finish()
    encode_s = Job(["encode", str(recipe)], work / "encode.log", env).finish()
    meta = read_meta(work / "run" / "data" / "train")
    prep = {"tokenize_s": tokenize_s, "encode_s": encode_s, "train_pairs": meta["num_examples"]}
    return manifest, recipe, prep


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per side")
    ap.add_argument("--lang", default="fr", help="target language of the gettext catalogs")
    ap.add_argument("--max-train", type=int, default=0, help="training pairs kept; 0 = all")
    ap.add_argument("--vocab", type=int, default=8000, help="joint BPE vocabulary size")
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--d-ff", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    ap.add_argument(
        "--init", choices=["normal", "xavier"], default="normal",
        help="tfcli's model.init; normal = N(0, 0.02), the peer's own initialisation",
    )  # fmt: skip
    ap.add_argument("--max-tokens", type=int, default=2048, help="token budget per batch")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    ap.add_argument("--warmup", type=int, default=100, help="inverse-sqrt warmup updates")
    ap.add_argument("--log-every", type=int, default=25, help="updates per train-loss point")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per side")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument(
        "--bf16", action=argparse.BooleanOptionalAction, default=None,
        help="bf16 autocast on both sides (default: on for cuda)",
    )  # fmt: skip
    ap.add_argument("--decode-max-tokens", type=int, default=4096, help="decode batch budget")
    ap.add_argument("--work", type=Path, default=None, help="keep every artefact here")
    ap.add_argument("--write", type=Path, default=None, help="append the markdown to FILE")
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.bf16 = args.device == "cuda" if args.bf16 is None else args.bf16
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        manifest, recipe, prep = prepare(args, work)
        from tfcli.tokenizer.vocab import load_tokenizer

        tok = load_tokenizer(work / "run" / "tokenizer.json")
        prep["vocab"] = tok.get_vocab_size()
        ours, peer, model = train_both(args, work, recipe, prep["vocab"])
        print("decoding the test split ...", file=sys.stderr, flush=True)
        scores = decode_both(args, work, work / "corpus", ours, model, tok)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    text = report(args, manifest, prep, ours, peer, scores)
    print(text)
    if args.write:
        with open(args.write, "a", encoding="utf-8") as f:
            f.write(f"\n### {args.minutes:g} minutes on {args.device}\n\n{text}\n")


if __name__ == "__main__":
    main()
