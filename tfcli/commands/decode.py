"""`tfcli decode`: translate lines (greedy, beam, sampling) or fill <mask> tokens; score BLEU/chrF."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.decoding.outputs import OutputFormat
from tfcli.errors import CheckpointError, DataError, TfcliError
from tfcli.recipe.schema import DecodeConfig, SearchMode

SEQ2SEQ_MODES = tuple(m.value for m in SearchMode)  # greedy, beam, sample

_FLAG_KEYS = {  # CLI flag -> decode.<key> in the recipe
    "mode": "mode", "beam_size": "beam_size", "length_penalty": "length_penalty",
    "max_len_a": "max_len_a", "max_len_b": "max_len_b", "min_len": "min_len", "nbest": "nbest",
    "no_repeat_ngram": "no_repeat_ngram", "temperature": "temperature", "top_k": "top_k",
    "top_p": "top_p", "seed": "seed", "max_tokens": "max_tokens", "topk": "topk_fill",
}  # fmt: skip
_FILL_MASK_FLAGS = ("mode", "max_tokens", "topk")  # the rest only steer a translation search


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
    from tfcli.decoding.inputs import read_lines
    from tfcli.decoding.metrics import check_reference

    path = run_checkpoints.resolve_checkpoint(checkpoint)
    meta = ckpt.read_meta(path)
    kind = meta.get("kind", "seq2seq")
    opts["fmt"] = OutputFormat(opts["fmt"])
    cfg = _decode_settings(meta, opts)
    mode = _check_request(kind, cfg, opts)
    if opts["reference"] is not None:
        check_reference(opts["reference"], opts["input_path"])
    lines = read_lines(opts["input_path"])
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


def _decode_settings(meta: dict, opts: dict) -> DecodeConfig:
    """The checkpoint recipe's decode section < --recipe's < --set < flags (typed by click)."""
    import dataclasses

    from tfcli.recipe import loader

    known = {f.name for f in dataclasses.fields(DecodeConfig)}
    embedded = (meta.get("recipe") or {}).get("decode") or {}
    section = {k: v for k, v in embedded.items() if k in known}  # tolerate older recipes
    if opts["recipe"]:
        section.update(loader.read_raw(loader.resolve_path(opts["recipe"])).get("decode") or {})
    for text in opts["overrides"]:
        if not text.startswith("decode."):
            raise TfcliError(f"--set {text}: decode only takes decode.KEY=VALUE settings")
    raw = loader.apply_overrides({"decode": section}, list(opts["overrides"]))
    flags = {f"decode.{key}": opts[flag] for flag, key in _FLAG_KEYS.items()}
    if flags["decode.mode"] == "fill-mask":  # not a search: _check_request handles it
        flags["decode.mode"] = None
    raw = loader.set_values(raw, flags)  # None = flag not given
    return loader.from_dict(raw, "decode settings").decode


def _check_request(kind: str, cfg: DecodeConfig, opts: dict) -> str:
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
        search_only = [f for f in _FLAG_KEYS if f not in _FILL_MASK_FLAGS and opts[f] is not None]
        if search_only:
            flag = "--" + search_only[0].replace("_size", "").replace("_", "-")
            raise CheckpointError(
                f"{flag} is a translation search setting; this masked-LM checkpoint only fills "
                "<mask> tokens (its settings: --topk, --max-tokens)"
            )
        return "fill-mask"
    if asked == "fill-mask":
        raise CheckpointError(
            "--mode fill-mask needs a masked-LM checkpoint (tfcli pretrain-mlm); this one translates"
        )
    mode = cfg.mode.value
    if cfg.mode is SearchMode.GREEDY and cfg.nbest > 1:
        raise TfcliError(
            f"--nbest {cfg.nbest} needs --mode beam or sample; greedy gives one output"
        )
    if cfg.mode is SearchMode.BEAM and cfg.nbest > cfg.beam_size:
        raise TfcliError(f"--nbest {cfg.nbest} exceeds the beam ({cfg.beam_size}); raise --beam")
    if opts["as_json"] and opts["fmt"] is OutputFormat.JSONL and opts["output"] is None:
        raise TfcliError("--json replaces the hypotheses on stdout; add --output for the jsonl")
    return mode


def _run_translate(
    model: Any, toks: dict, cfg: DecodeConfig, lines: Iterator[str], opts: dict, name: str
) -> None:
    from tfcli.decoding.attention_plot import check_layer_head, plot_translation
    from tfcli.decoding.inputs import is_interactive
    from tfcli.decoding.metrics import score_reference
    from tfcli.decoding.outputs import sink, translation_lines
    from tfcli.decoding.translate import Translator
    from tfcli.textio import iter_chunks

    if opts["attention"] is not None:  # before decoding: a typo costs no decoding time
        spec = model.spec
        check_layer_head(spec.decoder_layers, spec.n_heads, opts["layer"], opts["head"])
    translator = Translator(model, toks["src"], toks["tgt"], cfg)
    interactive = is_interactive(opts["input_path"])
    best: list[str] = []
    picked = None  # the Translation of the --attention line
    start = 0
    with sink(opts["output"], opts["as_json"]) as out:
        for chunk in iter_chunks(lines, 1 if interactive else opts["chunk_size"]):
            results = translator.translate_chunk(chunk, start)
            start += len(chunk)
            if out is not None:
                out.write(
                    "".join(
                        translation_lines(r, opts["fmt"], cfg.nbest, toks["tgt"]) for r in results
                    )
                )
                out.flush()
            if opts["reference"] is not None:
                best.extend(r.texts[0] for r in results)
            picked = next((r for r in results if r.index == opts["attention_line"] - 1), picked)
    summary = translator.stats.summary(name, cfg.mode.value)
    if opts["reference"] is not None:
        summary.update(score_reference(best, opts["reference"]))
    if opts["attention"] is not None:
        line = opts["attention_line"]
        if picked is None:
            raise DataError(f"--attention-line {line}: the input has only {start} lines")
        plot_translation(
            model, toks["src"], toks["tgt"], picked, opts["attention"], opts["layer"], opts["head"]
        )
        console.success(f"attention of line {line} written to {opts['attention']}")
    _report(summary, translator.stats.truncated, opts["as_json"], interactive)


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


def _run_fill(
    model: Any, tok: Any, cfg: DecodeConfig, lines: Iterator[str], opts: dict, name: str
) -> None:
    from tfcli.decoding.inputs import is_interactive
    from tfcli.decoding.outputs import filled_lines, sink
    from tfcli.decoding.translate import MaskFiller
    from tfcli.textio import iter_chunks

    filler = MaskFiller(model, tok, cfg.topk_fill, cfg.max_tokens)
    interactive = is_interactive(opts["input_path"])
    start = 0
    with sink(opts["output"], opts["as_json"]) as out:
        for chunk in iter_chunks(lines, 1 if interactive else opts["chunk_size"]):
            results = filler.fill_chunk(chunk, start)
            start += len(chunk)
            if out is not None:
                out.write("".join(filled_lines(r, opts["fmt"]) for r in results))
                out.flush()
    summary = filler.stats.summary(name, "fill-mask")
    _report(summary, filler.stats.truncated, opts["as_json"], interactive)
