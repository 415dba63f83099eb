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
    "iterations": "iterations", "length_beam": "length_beam", "length": "length",
    "length_ratio": "length_ratio", "force_iterations": "force_iterations",
}  # fmt: skip
_AR_ONLY = ("beam_size", "length_penalty", "no_repeat_ngram", "temperature", "top_k", "top_p")
_NAT_ONLY = ("iterations", "length_beam", "length", "length_ratio", "lengths", "force_iterations")
_FILL_MASK_FLAGS = ("mode", "max_tokens", "topk")  # the rest only steer a translation search


def _options(func: Any) -> Any:
    opts = [
        click.option("-i", "--input", "input_path", type=click.Path(dir_okay=False, path_type=Path), help="Read sentences from FILE (.gz ok), one per line; default stdin (a terminal: interactive)."),
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write hypotheses to FILE (atomically) instead of stdout."),
        click.option("--mode", type=click.Choice([*SEQ2SEQ_MODES, "fill-mask"]), help="Search: greedy | beam | sample (seq2seq); mask-predict (non-autoregressive checkpoints, the default there); fill-mask (MLM, the default there)."),
        click.option("--iterations", type=click.IntRange(min=1), help="Mask-predict: refinement passes T (1 = one-shot), e.g. --iterations 4."),
        click.option("--force-iterations/--no-force-iterations", default=None, help="Mask-predict: run all T passes (the paper); by default a sentence stops once a pass changes none of its tokens (fairseq's default)."),
        click.option("--length-beam", type=click.IntRange(min=1), help="Mask-predict: the L most likely lengths decoded side by side; the best mean log-probability wins."),
        click.option("--length", type=click.Choice(["predict", "truncate"]), help="Mask-predict: predict (the length predictor) | truncate (decode at the maximum length, cut at the first </s>)."),
        click.option("--length-ratio", type=click.FloatRange(min=0.0, min_open=True), help="Mask-predict: output length = round(R * source subwords), e.g. --length-ratio 1.2."),
        click.option("--lengths", type=click.Path(dir_okay=False, path_type=Path), help="Mask-predict: FILE with the exact output length (subwords) of each input line, one integer a line."),
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
        click.option("--engine", type=click.Choice(["torch", "ctranslate2"]), default="torch", show_default=True, help="ctranslate2: search with CTranslate2 on a `tfcli export --to ctranslate2` directory, or on a checkpoint converted once into a cache (pip install 'tfcli[export]')."),
        click.option("--quantization", type=click.Choice(["int8", "int16", "float16", "bfloat16", "float32"]), help="--engine ctranslate2: weight type (default float32 for a checkpoint, the export's own for an export dir); int8 is the fast CPU choice."),
        click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True, help="text: plain lines; jsonl: hypotheses, scores and pieces per sentence."),
        click.option("--reference", type=click.Path(dir_okay=False, path_type=Path), help="Score the (best) hypotheses against FILE with sacreBLEU BLEU and chrF."),
        click.option("--json", "as_json", is_flag=True, help="Print scores and speed as one JSON object on stdout, instead of the hypotheses (keep those with --output)."),
        click.option("--attention", type=click.Path(dir_okay=False, path_type=Path), help="Draw the cross-attention of one sentence to FILE.png."),
        click.option("--constraints", type=click.Path(dir_okay=False, path_type=Path), help="Beam: phrases each output must contain, one line per input line: tab-separated (FILE.jsonl: a JSON list of strings); empty line = none."),
        click.option("--attention-line", type=click.IntRange(min=1), default=1, show_default=True, help="Which input line --attention draws (1 = first)."),
        click.option("--layer", type=click.IntRange(min=1), help="--attention: decoder layer (1 = first; default the last)."),
        click.option("--head", type=click.IntRange(min=1), help="--attention: head (default the mean of all heads)."),
        click.option("--recipe", metavar="RECIPE", help="Take decode settings from this recipe (file or bundled name) instead of the checkpoint's own."),
        click.option("--set", "overrides", multiple=True, metavar="decode.KEY=VALUE", help="Override one decode setting (repeatable), e.g. --set decode.beam_size=8."),
        click.option("--chunk-size", type=click.IntRange(min=1), default=2000, show_default=True, help="Lines read, sorted and decoded together before their output is written."),
    ]  # fmt: skip
    for opt in reversed(opts):
        func = opt(func)
    return click.argument(
        "checkpoints", nargs=-1, required=True, type=click.Path(path_type=Path),
        metavar="CHECKPOINT...",
    )(func)  # fmt: skip


@click.command()
@_options
def decode(checkpoints: tuple[Path, ...], **opts: Any) -> None:
    """Translate sentences with a trained checkpoint, or fill <mask> tokens with an MLM one.

    CHECKPOINT is a .safetensors file or a run directory (its best checkpoint). Several seq2seq
    checkpoints (same tokenizers; sizes may differ) decode as one ensemble: at every step the
    log of their mean token probability (fairseq's EnsembleModel); settings come from the
    first. Input is read in
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
      tfcli decode runs/a runs/b runs/c -i test.src -o hyps.txt     # an ensemble of three
      tfcli decode runs/demo-tiny -i test.src --constraints terms.tsv  # must-have phrases
      echo "the cat <mask> on the mat" | tfcli decode runs/bert-mini
      tfcli decode runs/demo-tiny                  # on a terminal: type a sentence, Ctrl-D ends
      tfcli decode runs/nat-demo -i test.src --iterations 4 --length-beam 3   # mask-predict
      tfcli decode runs/nat-demo -i test.src --length-ratio 1.1 --iterations 10
      tfcli decode runs/nat-demo -i test.src --iterations 10 --force-iterations  # all 10 passes
      tfcli decode runs/demo-tiny -i test.src --engine ctranslate2 --quantization int8
    """
    if opts["engine"] == "ctranslate2" or opts["quantization"] is not None:
        return _decode_ctranslate2(checkpoints, opts)
    from tfcli.decoding.ctranslate2_engine import refuse_export_for_torch

    refuse_export_for_torch(checkpoints)
    from tfcli.checkpoints import files as ckpt
    from tfcli.checkpoints import steps as run_checkpoints
    from tfcli.decoding.ensemble import check_members, load_members
    from tfcli.decoding.inputs import read_lines
    from tfcli.decoding.metrics import check_reference

    paths = [run_checkpoints.resolve_checkpoint(c) for c in checkpoints]
    check_members(paths, [ckpt.read_meta(p) for p in paths], attention=opts["attention"])
    path = paths[0]
    meta = ckpt.read_meta(path)
    kind = meta.get("kind", "seq2seq")
    opts["fmt"] = OutputFormat(opts["fmt"])
    cfg = _decode_settings(meta, opts)
    mode = _check_request(kind, cfg, opts)
    _check_decoder(meta, cfg, {**opts, "checkpoints": paths})
    if opts["reference"] is not None:
        check_reference(opts["reference"], opts["input_path"])
    lines = read_lines(opts["input_path"])
    import torch

    from tfcli.device import pick_device

    if opts["threads"]:
        torch.set_num_threads(opts["threads"])
    device = pick_device(opts["device"], setting="--device")
    from tfcli.allocator import keep_freed_memory

    keep_freed_memory(device)  # on CPU, every step / pass reuses its freed tensors
    model, meta = load_members(paths, device)
    toks = ckpt.load_tokenizers(meta)
    names = " + ".join(str(p) for p in paths)
    console.step(f"decode: {names} ({kind}, {mode}, {device.type})")
    if mode == "fill-mask":
        _run_fill(model, toks["src"], cfg, lines, opts, names)
    else:
        translator = None
        if mode == SearchMode.MASK_PREDICT.value:
            from tfcli.decoding.mask_predict import MaskPredictTranslator, read_lengths

            lengths = read_lengths(opts["lengths"]) if opts["lengths"] is not None else None
            translator = MaskPredictTranslator(model, toks["src"], toks["tgt"], cfg, lengths)
        _run_translate(model, toks, cfg, lines, opts, names, translator)


def _decode_settings(meta: dict, opts: dict) -> DecodeConfig:
    """The checkpoint recipe's decode section < --recipe's < --set < flags (typed by click)."""
    import dataclasses

    from tfcli.recipe import loader

    known = {f.name for f in dataclasses.fields(DecodeConfig)}
    embedded = (meta.get("recipe") or {}).get("decode") or {}
    section = {k: v for k, v in embedded.items() if k in known}  # tolerate older recipes
    if opts["recipe"]:
        section.update(loader.read_raw(loader.resolve_path(opts["recipe"])).get("decode") or {})
    section["mode"] = _default_mode(meta, section.get("mode"))
    for text in opts["overrides"]:
        if not text.startswith("decode."):
            raise TfcliError(f"--set {text}: decode only takes decode.KEY=VALUE settings")
    raw = loader.apply_overrides({"decode": section}, list(opts["overrides"]))
    flags = {f"decode.{key}": opts[flag] for flag, key in _FLAG_KEYS.items()}
    if flags["decode.mode"] == "fill-mask":  # not a search: _check_request handles it
        flags["decode.mode"] = None
    raw = loader.set_values(raw, flags)  # None = flag not given
    return loader.from_dict(raw, "decode settings").decode


def _non_autoregressive(meta: dict) -> bool:
    return (meta.get("model") or {}).get("decoder") == "non_autoregressive"


def _default_mode(meta: dict, mode: Any) -> Any:
    """A recipe's mode unless the checkpoint's decoder cannot run it: a non-autoregressive
    checkpoint decodes with mask-predict, an autoregressive one never does (beam instead).
    Flags and --set still ask for what they ask (and _check_decoder refuses mismatches)."""
    if meta.get("kind", "seq2seq") != "seq2seq":
        return mode
    if _non_autoregressive(meta):
        return SearchMode.MASK_PREDICT.value
    return SearchMode.BEAM.value if mode == SearchMode.MASK_PREDICT.value else mode


def _check_decoder(meta: dict, cfg: DecodeConfig, opts: dict, engine: str = "torch") -> None:
    """One line for a search or setting the checkpoint's decoder kind cannot use."""
    if meta.get("kind", "seq2seq") != "seq2seq":
        return
    given = lambda names: [n for n in names if opts.get(n) is not None]  # noqa: E731
    flag = lambda n: "--" + n.replace("_size", "").replace("_", "-")  # noqa: E731
    mask_predict = cfg.mode is SearchMode.MASK_PREDICT
    if not _non_autoregressive(meta):
        if mask_predict:
            raise CheckpointError(
                "--mode mask-predict needs a non-autoregressive checkpoint (model.decoder: "
                "non_autoregressive); this one is autoregressive: use --mode beam, greedy or sample"
            )
        if given(_NAT_ONLY):
            raise TfcliError(
                f"{flag(given(_NAT_ONLY)[0])} is a mask-predict setting; this checkpoint is "
                "autoregressive (use --beam, --max-len-a/-b to steer its search)"
            )
        return
    if not mask_predict:
        raise CheckpointError(
            f"--mode {cfg.mode.value}: this checkpoint is non-autoregressive (model.decoder: "
            "non_autoregressive); it decodes every token at once with --mode mask-predict"
        )
    refused = given(_AR_ONLY) + [n for n in ("attention", "constraints") if opts.get(n)]
    if len(opts.get("checkpoints") or ()) > 1:
        raise TfcliError("mask-predict decodes one non-autoregressive checkpoint, not an ensemble")
    if engine != "torch":
        raise TfcliError(f"--engine {engine} has no mask-predict search; use --engine torch")
    if refused:
        raise TfcliError(
            f"{flag(refused[0])} is not a mask-predict setting (its settings: --iterations, "
            "--force-iterations, --length-beam, --length, --length-ratio, --lengths)"
        )
    fixed = opts.get("lengths") is not None or cfg.length_ratio > 0 or cfg.length.value != "predict"
    if opts.get("lengths") is not None and (cfg.length_ratio > 0 or cfg.length.value != "predict"):
        raise TfcliError("--lengths fixes every length; drop --length-ratio / --length truncate")
    if opts.get("lengths") is not None and not Path(opts["lengths"]).is_file():
        raise DataError(f"--lengths {opts['lengths']}: no such file (one length per input line)")
    most = 1 if fixed else cfg.length_beam
    if cfg.nbest > most:
        raise TfcliError(
            f"--nbest {cfg.nbest} exceeds the {most} length candidate(s) mask-predict decodes; "
            "raise --length-beam (with predicted lengths)"
        )


def _check_request(kind: str, cfg: DecodeConfig, opts: dict) -> str:
    """The mode to run; one clear line for what this checkpoint or setting cannot do."""
    asked = opts["mode"]
    if kind == "mlm":
        if asked in SEQ2SEQ_MODES:
            raise CheckpointError(
                f"--mode {asked}: this is a masked-LM checkpoint, it can only fill <mask> tokens; "
                "translation needs a seq2seq checkpoint (tfcli train)"
            )
        for flag in ("reference", "attention", "constraints"):
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
    if opts["constraints"] is not None and cfg.mode is not SearchMode.BEAM:
        raise TfcliError(f"--constraints needs --mode beam (dynamic beam allocation), not {mode}")
    if cfg.mode is SearchMode.BEAM and cfg.nbest > cfg.beam_size:
        raise TfcliError(f"--nbest {cfg.nbest} exceeds the beam ({cfg.beam_size}); raise --beam")
    if opts["as_json"] and opts["fmt"] is OutputFormat.JSONL and opts["output"] is None:
        raise TfcliError("--json replaces the hypotheses on stdout; add --output for the jsonl")
    return mode


def _run_translate(
    model: Any,
    toks: dict,
    cfg: DecodeConfig,
    lines: Iterator[str],
    opts: dict,
    name: str,
    translator: Any = None,
) -> None:
    from tfcli.decoding.attention_plot import check_layer_head, plot_translation
    from tfcli.decoding.constraints import ConstraintFile
    from tfcli.decoding.inputs import is_interactive
    from tfcli.decoding.metrics import score_reference
    from tfcli.decoding.outputs import sink, translation_lines
    from tfcli.decoding.translate import Translator
    from tfcli.textio import iter_chunks

    if opts["attention"] is not None:  # before decoding: a typo costs no decoding time
        spec = model.spec
        check_layer_head(spec.decoder_layers, spec.n_heads, opts["layer"], opts["head"])
    if translator is None:
        translator = Translator(model, toks["src"], toks["tgt"], cfg)
    cons = ConstraintFile(opts["constraints"]) if opts["constraints"] is not None else None
    interactive = is_interactive(opts["input_path"])
    best: list[str] = []
    picked = None  # the Translation of the --attention line
    start = 0
    with sink(opts["output"], opts["as_json"]) as out:
        for chunk in iter_chunks(lines, 1 if interactive else opts["chunk_size"]):
            phrases = cons.take(len(chunk)) if cons is not None else None
            results = translator.translate_chunk(chunk, start, phrases)
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
        if cons is not None:  # inside the sink: a mismatch leaves no output file
            cons.check_exhausted()
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


def _decode_ctranslate2(checkpoints: tuple[Path, ...], opts: dict) -> None:
    """--engine ctranslate2: an export dir, or one checkpoint converted once into the cache."""
    from tfcli.decoding import ctranslate2_engine as ct2
    from tfcli.decoding.inputs import read_lines
    from tfcli.decoding.metrics import check_reference

    source, meta = ct2.engine_input(checkpoints, opts)
    opts["fmt"] = OutputFormat(opts["fmt"])
    cfg = _decode_settings(meta, opts)
    mode = _check_request(meta.get("kind", "seq2seq"), cfg, opts)
    _check_decoder(meta, cfg, opts, engine="ctranslate2")
    if opts["reference"] is not None:
        check_reference(opts["reference"], opts["input_path"])
    lines = read_lines(opts["input_path"])
    translator = ct2.open_engine(source, meta, cfg, opts)
    console.step(f"decode: {source} (seq2seq, {mode}, ctranslate2 {translator.device})")
    toks = {"src": translator.src_tok, "tgt": translator.tgt_tok}
    _run_translate(None, toks, cfg, lines, opts, str(source), translator)
