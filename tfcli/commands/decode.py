"""`tfcli decode`: translate lines (greedy, beam, sampling) or fill <mask> tokens; score BLEU/chrF."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

from tfcli import console
from tfcli.errors import CheckpointError, DataError, TfcliError

SEQ2SEQ_MODES = ("greedy", "beam", "sample")

_FLAG_KEYS = {  # CLI flag -> decode.<key> in the recipe
    "mode": "mode", "beam_size": "beam_size", "length_penalty": "length_penalty",
    "max_len_a": "max_len_a", "max_len_b": "max_len_b", "min_len": "min_len", "nbest": "nbest",
    "no_repeat_ngram": "no_repeat_ngram", "temperature": "temperature", "top_k": "top_k",
    "top_p": "top_p", "seed": "seed", "max_tokens": "max_tokens", "topk": "topk_fill",
}  # fmt: skip


def _options(func: Any) -> Any:
    opts = [
        click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False, path_type=Path), help="Read sentences from FILE (.gz ok), one per line; default stdin (a terminal: interactive)."),
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write hypotheses to FILE (atomically) instead of stdout."),
        click.option("--mode", type=click.Choice([*SEQ2SEQ_MODES, "fill-mask"]), help="Search: greedy | beam | sample (seq2seq); fill-mask (MLM, the default there)."),
        click.option("--beam", "beam_size", type=click.IntRange(min=1), help="Beam width."),
        click.option("--length-penalty", type=float, help="Rank finished hypotheses by score / length**alpha."),
        click.option("--max-len-a", type=float, help="Max output length = a * source length + b."),
        click.option("--max-len-b", type=int, help="Max output length = a * source length + b."),
        click.option("--min-len", type=click.IntRange(min=0), help="Minimum output length (tokens)."),
        click.option("--nbest", type=click.IntRange(min=1), help="Hypotheses per sentence (beam: <= beam; sample: independent samples)."),
        click.option("--no-repeat-ngram", type=click.IntRange(min=0), help="Never repeat an n-gram of this size (0 = off)."),
        click.option("--temperature", type=float, help="Sampling temperature."),
        click.option("--top-k", type=click.IntRange(min=0), help="Sample among the k most likely tokens (0 = off)."),
        click.option("--top-p", type=float, help="Nucleus sampling mass (1.0 = off)."),
        click.option("--seed", type=int, help="Seed for sampling."),
        click.option("--max-tokens", type=click.IntRange(min=1), help="Batch budget: padded source tokens x beam (x samples)."),
        click.option("--topk", type=click.IntRange(min=1), help="Fill-mask: candidates shown per <mask>."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True, help="auto: CUDA (bf16 autocast), then MPS, then CPU."),
        click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch (default: torch's choice, one per core); 1 is often faster on a busy machine."),
        click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True, help="text: plain lines; jsonl: hypotheses, scores and pieces per sentence."),
        click.option("--reference", type=click.Path(dir_okay=False, path_type=Path), help="Score the (best) hypotheses against FILE with sacreBLEU BLEU and chrF."),
        click.option("--json", "as_json", is_flag=True, help="Print scores and speed as one JSON object on stdout, instead of the hypotheses (keep those with --output)."),
        click.option("--attention", type=click.Path(dir_okay=False, path_type=Path), help="Draw the cross-attention of one sentence to FILE.png."),
        click.option("--attention-line", type=click.IntRange(min=1), default=1, show_default=True, help="Which input line --attention draws (1 = first)."),
        click.option("--layer", type=click.IntRange(min=1), help="--attention: decoder layer (1 = first; default the last)."),
        click.option("--head", type=click.IntRange(min=1), help="--attention: head (default the mean of all heads)."),
        click.option("--recipe", metavar="RECIPE", help="Take decode settings from this recipe (file or bundled name) instead of the checkpoint's own."),
        click.option("--set", "overrides", multiple=True, metavar="decode.KEY=VALUE", help="Override one decode setting (repeatable), e.g. --set decode.beam_size=8."),
        click.option("--chunk-size", type=click.IntRange(min=1), default=2000, show_default=True, help="Lines read, sorted and decoded together before their output is written."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return click.argument("checkpoint", type=click.Path(path_type=Path), metavar="CHECKPOINT")(func)


@click.command()
@_options
def decode(checkpoint: Path, **opts: Any) -> None:
    """Translate sentences with a trained checkpoint, or fill <mask> tokens with an MLM one.

    CHECKPOINT is a .safetensors file or a run directory (its best checkpoint). Input is read in
    chunks, each sorted by length and batched by --max-tokens; output keeps the input order and
    starts before the whole input is read. Decode settings come from the checkpoint's recipe;
    --recipe, --set decode.KEY=VALUE and flags override them (flags win).

    Text output has --nbest lines per input line, best first; blank input lines give blank
    output. jsonl gives one record per input line: {"line", "source", "hypotheses": [{"text",
    "score", "tokens" (pieces), "ids"}]}; a beam score is log-probability / length**penalty,
    a greedy or sampled one the summed log-probability.

    \b
    Examples:
      tfcli decode runs/demo-tiny --input demo/test.src --reference demo/test.tgt
      tfcli decode runs/demo-tiny --mode greedy < demo/test.src > hyps.txt
      tfcli decode runs/demo-tiny -i test.src -o hyps.txt --beam 8 --length-penalty 0.6
      tfcli decode runs/demo-tiny -i test.src --format jsonl --nbest 4 --beam 4
      tfcli decode runs/demo-tiny -i test.src -o hyps.txt --reference test.tgt --json
      tfcli decode runs/demo-tiny -i test.src --attention attn.png --attention-line 3
      echo "the cat <mask> on the mat" | tfcli decode runs/bert-mini
      tfcli decode runs/demo-tiny                  # on a terminal: type a sentence, Ctrl-D ends
    """
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints import steps as run_checkpoints

    path = run_checkpoints.resolve_checkpoint(checkpoint)
    meta = ckpt.read_meta(path)
    kind = meta.get("kind", "seq2seq")
    cfg = _decode_config(meta, opts)
    mode = _check_request(kind, cfg, opts)
    if opts["reference"] is not None:
        _check_reference(opts["reference"], opts["input_path"])
    lines = _input_lines(opts["input_path"])
    import torch

    from tfcli.device import pick_device

    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    device = pick_device(opts["device"], setting="--device")
    model, meta = ckpt.load_model(path, device)
    toks = ckpt.load_tokenizers(meta)
    console.step(f"decode: {path} ({kind}, {mode}, {device.type})")
    if mode == "fill-mask":
        _run_fill(model, toks["src"], cfg, lines, opts, str(path))
    else:
        _run_translate(model, toks, cfg, lines, opts, str(path))


def _decode_config(meta: dict, opts: dict) -> Any:
    """The checkpoint recipe's decode section < --recipe's < --set < flags."""
    import dataclasses

    from tfcli.recipe import loader as recipe_mod
    from tfcli.recipe import schema

    known = {f.name for f in dataclasses.fields(schema.DecodeConfig)}
    embedded = (meta.get("recipe") or {}).get("decode") or {}
    decode_raw = {k: v for k, v in embedded.items() if k in known}  # tolerate older recipes
    if opts["recipe"]:
        other = recipe_mod.read_raw(recipe_mod.resolve_path(opts["recipe"])).get("decode") or {}
        decode_raw.update(other)
    flags = [
        f"decode.{key}={json.dumps(opts[flag])}"
        for flag, key in _FLAG_KEYS.items()
        if opts[flag] is not None and not (flag == "mode" and opts[flag] == "fill-mask")
    ]
    for text in opts["overrides"]:
        if not text.startswith("decode."):
            raise TfcliError(f"--set {text}: decode only takes decode.KEY=VALUE settings")
    raw = recipe_mod.apply_overrides({"decode": decode_raw}, [*opts["overrides"], *flags])
    return recipe_mod.from_dict(raw, "decode settings").decode


def _check_request(kind: str, cfg: Any, opts: dict) -> str:
    """The mode to run; one clear line for what this checkpoint or setting cannot do."""
    asked = opts["mode"]
    if kind == "mlm":
        if asked in SEQ2SEQ_MODES:
            raise CheckpointError(
                f"--mode {asked}: this is a masked-LM checkpoint, it can only fill <mask> tokens; "
                "translation needs a seq2seq checkpoint (tfcli train)"
            )
        for flag in ("reference", "attention"):
            if opts[flag] is not None:
                raise CheckpointError(
                    f"--{flag} needs a seq2seq checkpoint; this one is a masked LM"
                )
        return "fill-mask"
    if asked == "fill-mask":
        raise CheckpointError(
            "--mode fill-mask needs a masked-LM checkpoint (tfcli pretrain-mlm); this one translates"
        )
    mode = cfg.mode.value
    if mode == "greedy" and cfg.nbest > 1:
        raise TfcliError(
            f"--nbest {cfg.nbest} needs --mode beam or sample; greedy gives one output"
        )
    if mode == "beam" and cfg.nbest > cfg.beam_size:
        raise TfcliError(f"--nbest {cfg.nbest} exceeds the beam ({cfg.beam_size}); raise --beam")
    if opts["as_json"] and opts["fmt"] == "jsonl" and opts["output"] is None:
        raise TfcliError("--json replaces the hypotheses on stdout; add --output for the jsonl")
    return mode


def _count_lines(path: Path) -> int:
    from tfcli.textio import iter_lines

    return sum(1 for _ in iter_lines(path))


def _check_reference(reference: Path, input_path: Path | None) -> None:
    """Fail before decoding when the reference is missing or (for an input file) misaligned."""
    if not reference.is_file():
        raise DataError(f"--reference: file not found: {reference}")
    if input_path is not None and input_path.is_file():
        n_in, n_ref = _count_lines(input_path), _count_lines(reference)
        if n_in != n_ref:
            raise DataError(
                f"--reference {reference} has {n_ref} lines but --input {input_path} has {n_in}; "
                "they must be line-aligned"
            )


def _input_lines(input_path: Path | None) -> Iterator[str]:
    from tfcli.textio import expand_inputs, iter_lines

    if input_path is not None:
        (path,) = expand_inputs([str(input_path)], "--input")
        return iter_lines(path)
    if console.is_interactive_stdin():
        return _interactive_lines()
    return _stdin_lines()


def _stdin_lines() -> Iterator[str]:
    stream = getattr(sys.stdin, "buffer", sys.stdin)  # bytes, to report bad UTF-8 by line
    for lineno, raw in enumerate(stream, 1):
        if isinstance(raw, str):
            yield raw.rstrip("\r\n")
            continue
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(
                f"<stdin>:{lineno}: invalid UTF-8 (byte {e.start}); pipe UTF-8 text"
            ) from None


def _interactive_lines() -> Iterator[str]:
    console.info("Type a sentence and press Enter; Ctrl-D ends.")
    while True:
        click.echo("> ", err=True, nl=False)
        line = sys.stdin.readline()
        if not line:
            click.echo("", err=True)
            return
        yield line.rstrip("\r\n")


@contextmanager
def _sink(output: Path | None, quiet_stdout: bool) -> Iterator[IO[str] | None]:
    """Where hypotheses go: --output (atomic: complete or untouched), stdout, or nowhere."""
    from tfcli.textio import atomic_path

    if output is not None:
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as f:
            yield f
    elif quiet_stdout:
        yield None
    else:
        yield sys.stdout


def _translation_lines(r: Any, fmt: str, nbest: int, tok: Any) -> str:
    if fmt == "text":
        texts = (r.texts + [""] * nbest)[:nbest]  # always nbest lines per input line
        return "".join(t + "\n" for t in texts)
    hyps = [
        {
            "text": t,
            "score": h.score,
            "tokens": [tok.id_to_token(i) for i in h.tokens],
            "ids": h.tokens,
        }
        for h, t in zip(r.hypotheses, r.texts, strict=True)
    ]
    record = {"line": r.index + 1, "source": r.source, "hypotheses": hyps}
    return json.dumps(record, ensure_ascii=False) + "\n"


def _run_translate(
    model: Any, toks: dict, cfg: Any, lines: Iterator[str], opts: dict, name: str
) -> None:
    from tfcli.decoding.translate import Translator, chunks

    if opts["attention"] is not None:
        _check_layer_head(model, opts)
    translator = Translator(model, toks["src"], toks["tgt"], cfg)
    interactive = opts["input_path"] is None and console.is_interactive_stdin()
    best: list[str] = []
    picked = None  # (src ids, output ids) of the --attention line
    start = 0
    with _sink(opts["output"], opts["as_json"]) as out:
        for chunk in chunks(lines, 1 if interactive else opts["chunk_size"]):
            results = translator.translate_chunk(chunk, start)
            start += len(chunk)
            if out is not None:
                out.write(
                    "".join(
                        _translation_lines(r, opts["fmt"], cfg.nbest, toks["tgt"]) for r in results
                    )
                )
                out.flush()
            if opts["reference"] is not None:
                best.extend(r.texts[0] for r in results)
            for r in results:
                if r.index == opts["attention_line"] - 1:
                    picked = (r.src_ids, r.hypotheses[0].tokens)
    summary = _summary(translator.stats, name, cfg.mode.value)
    if opts["reference"] is not None:
        summary.update(_score(best, opts["reference"]))
    if opts["attention"] is not None:
        _draw_attention(model, toks, picked, start, opts)
    _report(summary, translator.stats.truncated, opts["as_json"], interactive)


def _check_layer_head(model: Any, opts: dict) -> None:
    spec = model.spec
    if opts["layer"] is not None and opts["layer"] > spec.decoder_layers:
        raise TfcliError(
            f"--layer {opts['layer']}: the decoder has layers 1..{spec.decoder_layers}"
        )
    if opts["head"] is not None and opts["head"] > spec.n_heads:
        raise TfcliError(f"--head {opts['head']}: attention has heads 1..{spec.n_heads}")


def _draw_attention(model: Any, toks: dict, picked: Any, n_lines: int, opts: dict) -> None:
    import torch

    from tfcli.decoding.attention_plot import cross_attention, plot_attention, select

    line = opts["attention_line"]
    if picked is None:
        raise DataError(f"--attention-line {line}: the input has only {n_lines} lines")
    src_ids, out_ids = picked
    device = next(model.parameters()).device
    weights = cross_attention(model, torch.tensor([src_ids], device=device), out_ids)
    src_labels = [toks["src"].id_to_token(i) for i in src_ids[:-1]] + ["</s>"]
    out_labels = [toks["tgt"].id_to_token(i) for i in out_ids] + ["</s>"]
    layer = opts["layer"] or weights.shape[0]
    head = f"head {opts['head']}" if opts["head"] else "mean of heads"
    title = f"cross-attention, line {line}, layer {layer}, {head}"
    plot_attention(
        select(weights, layer, opts["head"]), src_labels, out_labels, opts["attention"], title
    )
    console.success(f"attention of line {line} written to {opts['attention']}")


def _score(best: list[str], reference: Path) -> dict:
    from tfcli.decoding.metrics import bleu_chrf
    from tfcli.textio import iter_lines

    refs = list(iter_lines(reference))
    if len(refs) != len(best):
        raise DataError(
            f"--reference {reference} has {len(refs)} lines but {len(best)} sentences were "
            "decoded; they must be line-aligned"
        )
    return bleu_chrf(best, refs)


def _summary(stats: Any, name: str, mode: str) -> dict:
    """Counts and speed; the time is decoding time (waiting for input is not counted)."""
    seconds = stats.seconds
    rate = 1.0 / seconds if seconds > 0 else 0.0
    return {
        "checkpoint": name,
        "mode": mode,
        "sentences": stats.sentences,
        "output_tokens": stats.output_tokens,
        "seconds": round(seconds, 3),
        "sentences_per_second": round(stats.sentences * rate, 2),
        "tokens_per_second": round(stats.output_tokens * rate, 1),
    }


def _report(summary: dict, truncated: int, as_json: bool, interactive: bool) -> None:
    if truncated:
        console.warn(f"{truncated} input lines were longer than the model's positions and were cut")
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
        return
    if not interactive:
        console.success(
            f"{summary['sentences']} sentences decoded in {summary['seconds']:.1f} s "
            f"({summary['sentences_per_second']:.1f} sentences/s, "
            f"{summary['tokens_per_second']:.0f} tokens/s)"
        )
    if "bleu" in summary:
        rows = [
            ("BLEU", f"{summary['bleu']:.2f}", summary["bleu_signature"]),
            ("chrF", f"{summary['chrf']:.2f}", summary["chrf_signature"]),
        ]
        console.console.print(
            console.table("Scores (sacreBLEU)", rows, ["metric", "score", "signature"])
        )


def _filled_lines(r: Any, fmt: str) -> str:
    if fmt == "jsonl":
        masks = [
            [{"id": i, "token": piece, "prob": p} for i, piece, p in cands]
            for cands in r.candidates
        ]
        record = {"line": r.index + 1, "source": r.source, "filled": r.filled, "masks": masks}
        return json.dumps(record, ensure_ascii=False) + "\n"
    text = r.filled + "\n"
    for k, cands in enumerate(r.candidates, 1):
        text += f"  <mask> {k}: " + " | ".join(f"{piece} {p:.3f}" for _, piece, p in cands) + "\n"
    return text


def _run_fill(model: Any, tok: Any, cfg: Any, lines: Iterator[str], opts: dict, name: str) -> None:
    from tfcli.decoding.translate import MaskFiller, chunks

    filler = MaskFiller(model, tok, cfg.topk_fill, cfg.max_tokens)
    interactive = opts["input_path"] is None and console.is_interactive_stdin()
    start = 0
    with _sink(opts["output"], opts["as_json"]) as out:
        for chunk in chunks(lines, 1 if interactive else opts["chunk_size"]):
            results = filler.fill_chunk(chunk, start)
            start += len(chunk)
            if out is not None:
                out.write("".join(_filled_lines(r, opts["fmt"]) for r in results))
                out.flush()
    summary = _summary(filler.stats, name, "fill-mask")
    _report(summary, filler.stats.truncated, opts["as_json"], interactive)
