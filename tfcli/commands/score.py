"""`tfcli score`: forced decoding of given translations (tfcli.decoding.scoring)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.commands.options import inference_options
from tfcli.errors import CheckpointError, DataError


def load_for_scoring(checkpoint: Path, device: str, threads: int | None) -> tuple[Any, dict, Path]:
    """(model on the device, its metadata, the resolved path); shared with `tfcli evaluate`."""
    import torch

    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints import steps as run_checkpoints
    from tfcli.device import pick_device

    path = run_checkpoints.resolve_checkpoint(checkpoint)
    ckpt.read_meta(path)  # a damaged header is one line before any weight is read
    if threads:
        torch.set_num_threads(threads)
    model, meta = ckpt.load_model(path, pick_device(device, setting="--device"))
    return model, meta, path


def check_forced_decoding(meta: dict, command: str) -> None:
    """Forced decoding needs an autoregressive translation model."""
    if meta.get("kind", "seq2seq") != "seq2seq":
        raise CheckpointError(
            f"{command} scores translations; this is a masked-LM checkpoint (tfcli evaluate "
            "CKPT --text FILE gives its masked accuracy and pseudo-perplexity)"
        )
    if (meta.get("model") or {}).get("decoder", "autoregressive") != "autoregressive":
        raise CheckpointError(
            f"{command}: a non-autoregressive model has no left-to-right likelihood to force; "
            "score an autoregressive checkpoint"
        )


def aligned_pairs(src: Path, tgt: Path):
    """Lazy (source, target) line pairs, after checking both files exist and align."""
    from tfcli.data.encoding import count_lines
    from tfcli.textio import expand_inputs, iter_lines

    (src,) = expand_inputs([str(src)], "--src")
    (tgt,) = expand_inputs([str(tgt)], "--tgt")
    ns, nt = count_lines(src), count_lines(tgt)
    if ns != nt:
        raise DataError(f"--src {src} has {ns} lines but --tgt {tgt} has {nt}; they must align")
    return zip(iter_lines(src), iter_lines(tgt), strict=True)


def _line(r: Any, fmt: str) -> str:
    if fmt == "text":
        return f"{r.logprob:.6f}\t{r.score:.6f}\t{r.tokens}\n"
    record = {"line": r.index + 1, "source": r.source, "target": r.target,
              "logprob": r.logprob, "score": r.score, "tokens": r.tokens,
              "token_logprobs": r.token_logprobs}  # fmt: skip
    return json.dumps(record, ensure_ascii=False) + "\n"


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path), metavar="CHECKPOINT")
@click.option(
    "--src",
    "src",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Source sentences, one per line (.gz ok).",
)
@click.option(
    "--tgt",
    "tgt",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Their given translations, line-aligned with --src.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the scores to FILE (atomically) instead of stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="text: LOGPROB<TAB>SCORE<TAB>TOKENS per line; jsonl: also the pair and each token's log-probability.",
)
@click.option(
    "--length-penalty",
    type=float,
    default=1.0,
    show_default=True,
    help="SCORE = LOGPROB / TOKENS**alpha (1: per-token mean; 0: the sum, beam search's score without normalisation).",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=8192,
    show_default=True,
    help="Batch budget: rows x the longest side, in tokens.",
)
@inference_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the corpus summary as one JSON object on stdout instead of the scores (keep those with --output).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Pairs read, sorted and scored together before their scores are written.",
)
def score(checkpoint: Path, src: Path, tgt: Path, output: Path | None, fmt: str,
          length_penalty: float, max_tokens: int, device: str, threads: int | None,
          as_json: bool, chunk_size: int) -> None:  # fmt: skip
    """Score given translations with a trained model (forced decoding).

    Each target line is teacher-forced after its source line: LOGPROB is the sum of the
    model's log-probabilities of its tokens, the final </s> included (what beam search adds
    up for that output), TOKENS their count and SCORE = LOGPROB / TOKENS**alpha. Output keeps
    the input order, one line (or jsonl record) per pair; the corpus perplexity,
    exp(-sum LOGPROB / sum TOKENS), and the label-smoothed loss go to stderr (or stdout with
    --json). Like fairseq-generate --score-reference, marian-scorer and onmt_translate -gold.

    \b
    Examples:
      tfcli score runs/demo-tiny --src demo/test.src --tgt demo/test.tgt
      tfcli score runs/demo-tiny --src test.src --tgt hyps.txt --format jsonl -o scores.jsonl
      tfcli score runs/demo-tiny --src test.src --tgt test.tgt --json   # corpus perplexity only
      paste <(tfcli score RUN --src s --tgt a) <(tfcli score RUN --src s --tgt b)   # rerank
    """
    from tfcli.checkpoints.files import load_tokenizers
    from tfcli.decoding.outputs import sink
    from tfcli.decoding.scoring import Scorer

    pairs = aligned_pairs(src, tgt)
    model, meta, path = load_for_scoring(checkpoint, device, threads)
    check_forced_decoding(meta, "tfcli score")
    toks = load_tokenizers(meta)
    smoothing = ((meta.get("recipe") or {}).get("train") or {}).get("label_smoothing", 0.1)
    scorer = Scorer(model, toks["src"], toks["tgt"], max_tokens=max_tokens,
                    length_penalty=length_penalty, label_smoothing=smoothing)  # fmt: skip
    console.step(f"score: {path} ({model_device_name(model)})")
    with sink(output, as_json) as out:
        for r in scorer.score(pairs, chunk_size):
            if out is not None:
                out.write(_line(r, fmt))
    summary = {"checkpoint": str(path), **scorer.corpus.summary()}
    summary["seconds"] = round(scorer.corpus.seconds, 3)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    console.success(
        f"{summary['sentences']} pairs, {summary['tokens']:,} target tokens: perplexity "
        f"{summary['ppl']:.3f} (nll {summary['nll']:.4f} / token, loss {summary['loss']:.4f})"
    )


def model_device_name(model: Any) -> str:
    return next(model.parameters()).device.type
