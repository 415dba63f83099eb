"""`tfcli encode`: raw text -> memory-mapped token-id splits (RUN_DIR/data/<split>)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tfcli import console
from tfcli.commands.options import load_recipe, recipe_options
from tfcli.recipe.schema import Recipe
from tfcli.run_dir import RunDir


def _summary(metas: dict[str, dict]) -> None:
    """One column per split: kept, dropped by reason, tokens and lengths per side, speed."""

    def row(label: str, fn) -> list[str]:
        return [label, *(fn(m) for m in metas.values())]

    def speed(m: dict) -> str:
        return (
            f"{sum(m['num_tokens'].values()) / max(m.get('seconds', 0), 1e-9) / 1e6:.2f} M tokens/s"
        )

    first = next(iter(metas.values()))
    reasons = " / ".join(first["dropped"])
    rows = [
        row("examples kept", lambda m: f"{m['num_examples']:,}"),
        row(f"dropped ({reasons})", lambda m: " / ".join(f"{v:,}" for v in m["dropped"].values())),
    ]
    sides = dict.fromkeys(s for m in metas.values() for s in m["num_tokens"])  # a recipe may
    for side in sides:  # name parallel and text splits: "-" where a split has no such side
        rows.append(row(f"{side} tokens", lambda m, s=side: _side(m, s, "{n:,}")))
        rows.append(
            row(f"{side} length mean / p95", lambda m, s=side: _side(m, s, "{mean:.1f} / {p95}"))
        )
    if any(_weighted(m) for m in metas.values()):
        rows.append(row("corpora: weight x examples", _corpora))
        rows.append(row("pairs per epoch (weighted)", lambda m: _per_epoch(m)))
    if any(m.get("dropout") for m in metas.values()):
        rows.append(row("BPE-dropout copies", _dropout))
    rows += [
        row("id dtype", lambda m: m["dtype"]),
        row("speed", speed),
        row("time", lambda m: f"{m.get('seconds', 0):.1f} s"),
    ]
    console.show(console.table("Encoded", rows, ["", *metas]))


def _weighted(meta: dict) -> bool:
    return any(c.get("weight", 1.0) != 1.0 for c in meta.get("corpora") or [])


def _corpora(meta: dict) -> str:
    if not meta.get("corpora"):
        return "-"
    return ", ".join(f"{c['weight']:g} x {c['examples']:,}" for c in meta["corpora"])


def _per_epoch(meta: dict) -> str:
    if not meta.get("corpora"):
        return "-"
    return f"{sum(c['weight'] * c['examples'] for c in meta['corpora']):,.0f}"


def _dropout(meta: dict) -> str:
    d = meta.get("dropout")
    if not d:
        return "-"
    return f"{d['copies']} (p {d['p']:g}, seed {d['seed']})"


def _side(meta: dict, side: str, fmt: str) -> str:
    if side not in meta["num_tokens"]:
        return "-"
    return fmt.format(n=meta["num_tokens"][side], **meta["lengths"][side])


def _encode_files(
    r: Recipe,
    src: tuple[str, ...],
    tgt: tuple[str, ...],
    text: tuple[str, ...],
    output: Path,
    max_len_given: bool,
    force: bool,
    workers: int | None,
) -> dict:
    from tfcli import pipeline
    from tfcli.data import encoding
    from tfcli.textio import expand_inputs

    d = r.data
    if text:
        toks = pipeline.tokenizer_files(r, "text")
        max_len = d.max_len if max_len_given else 0  # long lines are packed/truncated by the MLM
        return encoding.encode_text(
            expand_inputs(list(text), "--text"),
            toks["text"],
            output,
            min_len=d.min_len,
            max_len=max_len,
            overwrite=force,
            workers=workers,
        )
    toks = pipeline.tokenizer_files(r, "parallel")
    return encoding.encode_parallel(
        expand_inputs(list(src), "--src"),
        expand_inputs(list(tgt), "--tgt"),
        toks["src"],
        toks["tgt"],
        output,
        min_len=d.min_len,
        max_len=d.max_len,
        max_len_ratio=d.max_len_ratio,
        overwrite=force,
        workers=workers,
    )


def _encode_recipe(r: Recipe, kind: str | None, force: bool) -> dict[str, dict]:
    """Every split of one kind (a run directory holds one: data/train is either parallel or
    text), parallel when the recipe names data.src/data.tgt unless --kind text."""
    from tfcli import pipeline
    from tfcli.data.split import read_meta
    from tfcli.errors import DataError

    has_parallel, has_text = bool(r.data.src or r.data.tgt), bool(r.data.text)
    if not (has_parallel or has_text):
        raise DataError(
            "nothing to encode: set data.src and data.tgt (parallel) or data.text (monolingual) "
            "in the recipe, or pass --src/--tgt or --text"
        )
    if kind is None:
        kind = "parallel" if has_parallel else "text"
        if has_parallel and has_text:
            console.info("encode: parallel data (data.src/tgt); --kind text encodes data.text")
    pipeline.ensure_tokenizer(r, kind=kind)
    splits = pipeline.ensure_encoded(r, kind=kind, force=force)
    return {split: read_meta(path) for split, path in splits.items()}


@click.command()
@recipe_options
@click.option(
    "--src", multiple=True, metavar="FILE", help="Source file or glob (repeatable; .gz ok)."
)
@click.option(
    "--tgt", multiple=True, metavar="FILE", help="Target file or glob, line-aligned with --src."
)
@click.option(
    "--text", multiple=True, metavar="FILE", help="Monolingual text file or glob (pretrain-mlm)."
)
@click.option(
    "--split",
    default="train",
    show_default=True,
    help="Split name: the default output is RUN_DIR/data/SPLIT.",
)
@click.option(
    "--tokenizer",
    "tokenizer",
    type=click.Path(dir_okay=False),
    default=None,
    help="tokenizer.json to use (default: the recipe's tokenizer.path, else RUN_DIR/tokenizer.json).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to write (default RUN_DIR/data/SPLIT).",
)
@click.option(
    "--min-len",
    type=click.IntRange(min=0),
    default=None,
    help="Drop examples with fewer tokens (data.min_len; default 1).",
)
@click.option(
    "--max-len",
    type=click.IntRange(min=0),
    default=None,
    help="Drop examples with more tokens, 0 = no limit (data.max_len; default 256; --text: no limit).",
)
@click.option(
    "--max-len-ratio",
    type=click.FloatRange(min=0),
    default=None,
    help="Drop pairs whose longer side exceeds this times the shorter, 0 = off (data.max_len_ratio).",
)
@click.option(
    "--force", is_flag=True, help="Re-encode, and replace a split made with another tokenizer."
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Tokenizing processes (default: one per CPU for inputs over 8 MB, else 1).",
)
@click.option(
    "--kind",
    type=click.Choice(["parallel", "text"]),
    default=None,
    help="With a recipe: encode data.src/tgt (parallel) or data.text (text, pretrain-mlm); "
    "default parallel when the recipe names data.src.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each split's meta.json to stdout.")
def encode(
    recipe: str | None,
    overrides: tuple[str, ...],
    run_dir: str | None,
    src: tuple[str, ...],
    tgt: tuple[str, ...],
    text: tuple[str, ...],
    split: str,
    tokenizer: str | None,
    output: Path | None,
    min_len: int | None,
    max_len: int | None,
    max_len_ratio: float | None,
    force: bool,
    workers: int | None,
    kind: str | None,
    as_json: bool,
) -> None:
    """Turn raw text into token-id splits that training memory-maps.

    Each line becomes one example of raw subword ids (no specials: collate adds them), stored
    as SPLIT/src.bin + src.idx (+ tgt.*) or text.bin + text.idx, with a meta.json of counts,
    length statistics, the tokenizer's sha256 and the inputs' fingerprints. The split is written
    to a temp directory and renamed into place, so an interrupted run leaves nothing behind.

    With --src/--tgt (or --text), encodes those files into one split. Without them, encodes
    every split the recipe names (train, valid, test), training the tokenizer first if needed
    and skipping splits that are up to date.

    \b
    Examples:
      tfcli encode --src train.en --tgt train.de --tokenizer tok/tokenizer.json -o data/train
      tfcli encode --src 'corpus/*.en.gz' --tgt 'corpus/*.de.gz' --max-len 200 --max-len-ratio 2.5
      tfcli encode --text wiki.txt --split valid --run-dir runs/bert
      tfcli encode demo-tiny                   # every split of the recipe, into its run_dir
      tfcli encode demo-mlm --kind text        # the recipe's data.text, for pretrain-mlm
      tfcli encode my.yaml --force             # re-encode everything
    """
    explicit = _check_inputs(src, tgt, text, output, kind)
    flags = {
        "data.min_len": min_len,
        "data.max_len": max_len,
        "data.max_len_ratio": max_len_ratio,
        "tokenizer.path": tokenizer,
    }
    r = load_recipe(recipe, overrides, run_dir, **flags)
    if explicit:
        out = output if output is not None else RunDir(r.run_dir).split(split)
        n = len(src) + len(tgt) + len(text)
        console.step(f"encode: {n} input pattern(s) -> {out}")
        metas = {split: _encode_files(r, src, tgt, text, out, max_len is not None, force, workers)}
        console.success(f"wrote {out}")
    else:
        metas = _encode_recipe(r, kind, force)
    _summary(metas)
    if as_json:
        console.out.print_json(json.dumps(metas, ensure_ascii=False))


def _check_inputs(
    src: tuple[str, ...],
    tgt: tuple[str, ...],
    text: tuple[str, ...],
    output: Path | None,
    kind: str | None,
) -> bool:
    """Refuse contradictory input flags; True when files are given (else the recipe's splits)."""
    if bool(src) != bool(tgt):
        raise click.UsageError("--src and --tgt go together (line-aligned parallel files)")
    if text and src:
        raise click.UsageError(
            "use either --src/--tgt (parallel) or --text (monolingual), not both"
        )
    explicit = bool(src or text)
    if output is not None and not explicit:
        raise click.UsageError(
            "-o/--output needs --src/--tgt or --text; for a recipe use --run-dir"
        )
    if kind is not None and explicit:
        raise click.UsageError("--kind picks the recipe's data; with --src/--tgt or --text drop it")
    return explicit
