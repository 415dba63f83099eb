"""`tfcli evaluate`: a checkpoint's loss, perplexity and BLEU/chrF on a test set, or a masked
LM's masked-token accuracy and pseudo-perplexity on a text file."""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.commands.options import inference_options
from tfcli.commands.score import aligned_pairs, check_forced_decoding, load_for_scoring
from tfcli.errors import CheckpointError, DataError
from tfcli.recipe.schema import DecodeConfig, SearchMode


def _recipe_files(meta: dict, split: str, keys: tuple[str, ...]) -> list[list[Path]]:
    """The files the checkpoint's recipe names for `split`, per key (data.test_src, ...)."""
    from tfcli.textio import expand_inputs

    data = (meta.get("recipe") or {}).get("data") or {}
    names = [("" if split == "train" else f"{split}_") + k for k in keys]
    if not all(data.get(n) for n in names):
        given = " and ".join(f"data.{n}" for n in names)
        raise DataError(
            f"--split {split}: the checkpoint's recipe sets no {given}; pass the files "
            "(--src/--tgt, or --text for a masked LM)"
        )
    return [expand_inputs(list(data[n]), f"data.{n}") for n in names]


def _pairs(meta: dict, split: str | None, src: Path | None, tgt: Path | None) -> list:
    """[(src file, tgt file)] to evaluate on: the given pair, or the recipe's split."""
    if src is not None or tgt is not None:
        if src is None or tgt is None or split is not None:
            raise click.UsageError("pass --src and --tgt together, or --split alone")
        return [(src, tgt)]
    srcs, tgts = _recipe_files(meta, split or _default_split(meta), ("src", "tgt"))
    if len(srcs) != len(tgts):
        raise DataError(f"{len(srcs)} source files but {len(tgts)} target files in the recipe")
    return list(zip(srcs, tgts, strict=True))


def _default_split(meta: dict) -> str:
    data = (meta.get("recipe") or {}).get("data") or {}
    return "test" if data.get("test_src") else "valid"


def _decode_config(meta: dict, flags: dict[str, Any]) -> DecodeConfig:
    """The checkpoint recipe's decode section, with the flags given (None = not given)."""
    from tfcli.recipe import loader

    known = {f.name for f in dataclasses.fields(DecodeConfig)}
    embedded = (meta.get("recipe") or {}).get("decode") or {}
    raw = {"decode": {k: v for k, v in embedded.items() if k in known}}
    raw = loader.set_values(raw, {f"decode.{k}": v for k, v in flags.items()})
    return loader.from_dict(raw, "decode settings").decode


def _evaluate_translation(
    model: Any, meta: dict, files: list, cfg: DecodeConfig, opts: dict
) -> dict:
    from tfcli.checkpoints.files import load_tokenizers
    from tfcli.decoding.metrics import bleu_chrf
    from tfcli.decoding.scoring import Scorer
    from tfcli.decoding.translate import Translator

    toks = load_tokenizers(meta)
    out: dict[str, Any] = {}
    autoregressive = (meta.get("model") or {}).get("decoder", "autoregressive") == "autoregressive"
    if autoregressive:
        smoothing = ((meta.get("recipe") or {}).get("train") or {}).get("label_smoothing", 0.1)
        scorer = Scorer(model, toks["src"], toks["tgt"], max_tokens=cfg.max_tokens,
                        label_smoothing=smoothing)  # fmt: skip
        for _ in scorer.score(_chain(files)):
            pass
        out.update(scorer.corpus.summary())
    if opts["bleu"]:
        translator = Translator(model, toks["src"], toks["tgt"], cfg)
        refs: list[str] = []

        def sources() -> Iterator[str]:  # the references are kept as the sources stream by
            for source, ref in _chain(files):
                refs.append(ref)
                yield source

        hyps = [r.texts[0] for r in translator.translate(sources())]
        out.update(bleu_chrf(hyps, refs), mode=cfg.mode.value, sentences=len(refs))
    return out


def _chain(files: list) -> Iterator[tuple[str, str]]:
    return itertools.chain.from_iterable(aligned_pairs(s, t) for s, t in files)


def _evaluate_mlm(model: Any, meta: dict, text: list[Path], opts: dict) -> dict:
    from tfcli.checkpoints.files import load_tokenizers
    from tfcli.decoding.mlm_scoring import frame, masked_accuracy, pseudo_perplexity
    from tfcli.recipe import loader
    from tfcli.textio import iter_lines
    from tfcli.training.masking import word_start_table

    tok = load_tokenizers(meta)["src"]
    known = {f.name for f in dataclasses.fields(loader.from_dict({}).mlm)}
    mlm = {k: v for k, v in ((meta.get("recipe") or {}).get("mlm") or {}).items() if k in known}
    cfg = loader.from_dict({"mlm": mlm}, "mlm settings").mlm
    lines = [line for path in text for line in iter_lines(path)]
    rows, cut = frame(model, tok, lines)
    if not rows:
        raise DataError("nothing to evaluate: the text has no non-blank line")
    if cut:
        console.warn(f"{cut} lines were longer than the model's positions and were cut")
    starts = word_start_table(tok) if cfg.whole_word else None
    out = {"sentences": len(rows), "seed": opts["seed"]}
    out.update(masked_accuracy(model, rows, cfg, seed=opts["seed"], max_tokens=opts["max_tokens"],
                               word_starts=starts))  # fmt: skip
    if opts["pseudo_ppl"]:
        out.update(pseudo_perplexity(model, rows, max_tokens=opts["max_tokens"]))
    return out


def _show(out: dict, title: str) -> None:
    rows = []
    for key in ("sentences", "tokens", "loss", "nll", "ppl", "bleu", "chrf", "accuracy",
                "masked_tokens", "pppl", "pseudo_nll"):  # fmt: skip
        if key in out:
            v = out[key]
            rows.append((key, f"{v:.4f}" if isinstance(v, float) else f"{v:,}"))
    if "bleu_signature" in out:
        rows += [
            ("BLEU signature", out["bleu_signature"]),
            ("chrF signature", out["chrf_signature"]),
        ]
    console.show(console.table(title, rows))


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path), metavar="CHECKPOINT")
@click.option(
    "--split",
    type=click.Choice(["train", "valid", "test"]),
    help="Evaluate on the files the checkpoint's recipe names for this split (default: test, else valid).",
)
@click.option(
    "--src",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Source file (with --tgt) instead of a recipe split.",
)
@click.option(
    "--tgt",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference translations, line-aligned with --src.",
)
@click.option(
    "--text",
    "text",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Masked LM: the text to evaluate on (default: the recipe's data.valid_text).",
)
@click.option(
    "--mode",
    type=click.Choice([m.value for m in SearchMode]),
    help="Search for BLEU/chrF (default: the checkpoint's decode.mode).",
)
@click.option("--beam", "beam_size", type=click.IntRange(min=1), help="Beam width for --mode beam.")
@click.option(
    "--length-penalty", type=float, help="Beam: rank finished hypotheses by score / length**alpha."
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    help="Batch budget in padded tokens (default: decode.max_tokens).",
)
@click.option(
    "--no-bleu",
    "bleu",
    is_flag=True,
    default=True,
    flag_value=False,
    help="Translation: only loss and perplexity (no decoding).",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Masked LM: seed of the masks scored for accuracy.",
)
@click.option(
    "--no-pseudo-ppl",
    "pseudo_ppl",
    is_flag=True,
    default=True,
    flag_value=False,
    help="Masked LM: skip pseudo-perplexity (it costs one row per token).",
)
@inference_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print the results as one JSON object on stdout."
)
def evaluate(checkpoint: Path, **opts: Any) -> None:
    """Evaluate a checkpoint on held-out data: one table (or --json) of its scores.

    A translation model gets the loss (label-smoothed, as training reports it), the NLL per
    target token and the perplexity from forced decoding, then BLEU and chrF (sacreBLEU) of
    its translations with the chosen search against the references: the same numbers as
    `tfcli score` and `tfcli decode --reference`. A masked LM gets masked-token accuracy,
    loss and perplexity on masks drawn from --seed (BERT's 80/10/10 corruption, its recipe's
    mlm settings) and pseudo-perplexity (every token masked in turn; Salazar et al. 2020).

    \b
    Examples:
      tfcli evaluate runs/demo-tiny                          # the recipe's test split
      tfcli evaluate runs/demo-tiny --split valid --mode greedy
      tfcli evaluate runs/demo-tiny --src test.de --tgt test.en --beam 8 --json
      tfcli evaluate runs/bert-mini-mlm --text demo/mono.valid.txt
    """
    model, meta, path = load_for_scoring(checkpoint, opts["device"], opts["threads"])
    kind = meta.get("kind", "seq2seq")
    cfg = _decode_config(meta, {"mode": opts["mode"], "beam_size": opts["beam_size"],
                                "length_penalty": opts["length_penalty"],
                                "max_tokens": opts["max_tokens"]})  # fmt: skip
    opts["max_tokens"] = cfg.max_tokens
    console.step(f"evaluate: {path} ({kind})")
    if kind == "mlm":
        if opts["src"] or opts["tgt"] or opts["mode"] or opts["beam_size"]:
            raise CheckpointError(
                "--src/--tgt/--mode/--beam evaluate translation; this is a masked-LM checkpoint "
                "(pass --text FILE)"
            )
        if opts["text"] is not None:
            from tfcli.textio import expand_inputs

            text = expand_inputs([str(opts["text"])], "--text")
        else:
            split = "train" if opts["split"] == "train" else "valid"
            (text,) = _recipe_files(meta, split, ("text",))
        out = _evaluate_mlm(model, meta, text, opts)
    else:
        if opts["text"] is not None:
            raise CheckpointError("--text evaluates a masked LM; this checkpoint translates")
        if (meta.get("model") or {}).get("decoder", "autoregressive") == "autoregressive":
            check_forced_decoding(meta, "tfcli evaluate")
        out = _evaluate_translation(
            model, meta, _pairs(meta, opts["split"], opts["src"], opts["tgt"]), cfg, opts
        )
    out = {"checkpoint": str(path), "kind": kind, **out}
    if opts["as_json"]:
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    else:
        _show(out, f"evaluate: {path}")
