"""`tfcli tokenize`: train a subword vocabulary, or show how an existing one splits text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tfcli import console
from tfcli.commands.options import load_recipe, recipe_options
from tfcli.errors import TfcliError
from tfcli.recipe import loader as recipe_mod
from tfcli.recipe import schema
from tfcli.recipe.schema import PreTokenizer, TokenizerType, Trainer
from tfcli.run_dir import RunDir, side_paths


def _is_recipe(arg: str) -> bool:
    """The first positional argument is a recipe when it looks like one, else an input file."""
    if arg.endswith((".yaml", ".yml")):
        return True
    return arg in recipe_mod.bundled_names() and not Path(arg).is_file()


def _output(output: Path | None, run_dir: str) -> Path:
    """The joint tokenizer path (-o, a directory in which to put tokenizer.json, or the run's)."""
    from tfcli.textio import ensure_dir

    path = output if output is not None else RunDir(run_dir).tokenizer
    if path.is_dir():
        path = RunDir(path).tokenizer  # a directory gets the name a run directory uses
    ensure_dir(path.parent)  # fail before a long training run, not after it
    return path


def _show(tok_path: Path, texts: tuple[str, ...]) -> None:
    """Print the pieces and ids of each text (stdout), then whether it round-trips (stderr)."""
    from tfcli.tokenizer.vocab import UNK, load_tokenizer, readable_piece

    tok = load_tokenizer(tok_path)
    for text in texts:
        enc = tok.encode(text)
        rows = [
            (i, readable_piece(p), t)
            for i, (p, t) in enumerate(zip(enc.tokens, enc.ids, strict=True))
        ]
        console.out.print(console.table(f"{text!r}", rows, ["#", "piece", "id"]))
        back = tok.decode(enc.ids)
        unknown = enc.ids.count(UNK)
        if unknown:
            note = f"{unknown} <unk> (characters the vocabulary has never seen)"
        else:
            note = "decodes back exactly" if back == text else f"decodes to {back!r} (normalised)"
        console.info(f"{len(enc.ids)} tokens; {note}")


def _summary(results: dict[str, Any], paths: dict[str, Path], cfg: schema.TokenizerConfig) -> None:
    """The summary table: one column per trained tokenizer (results from build_tokenizers)."""
    from tfcli.tokenizer.training import sample_stats

    sides = ["src"] if paths["src"] == paths["tgt"] else ["src", "tgt"]
    stats = {
        s: sample_stats(results[s].tokenizer, results[s].stats.sample, results[s].stats.spm_model)
        for s in sides
    }

    def row(label: str, fn: Any) -> list[str]:
        return [label] + [fn(results[s], stats[s]) for s in sides]

    settings = f"{cfg.type.value}, {cfg.pre_tokenizer.value}" + (", NFKC" if cfg.nfkc else "")
    settings += ", lowercase" if cfg.lowercase else ""
    settings += f", trained by {cfg.trainer.value}"
    max_lines = f" (max_lines {cfg.max_lines:,})" if cfg.max_lines else ""
    rows = [
        row("tokenizer", lambda r, s: str(paths["src"] if r is results["src"] else paths["tgt"])),
        row("model", lambda r, s: settings),
        row(
            "vocab size",
            lambda r, s: f"{r.tokenizer.get_vocab_size():,} (asked {cfg.vocab_size:,})",
        ),
        row("files", lambda r, s: f"{len(r.stats.files)}"),
        row("lines", lambda r, s: f"{r.stats.lines:,}{max_lines}"),
        row("characters", lambda r, s: f"{r.stats.chars:,}"),
        row(
            "tokens / line",
            lambda r, s: f"{s['tokens_per_line']:.1f} (on {len(r.stats.sample):,} sampled lines)",
        ),
        row("characters / token", lambda r, s: f"{s['chars_per_token']:.2f}"),
        row("unknown-token rate", lambda r, s: f"{100 * s['unk_rate']:.3f}%"),
        row("time", lambda r, s: _speed(r.stats)),
    ]
    columns = None if len(sides) == 1 else ["", "source", "target"]
    console.show(console.table("Tokenizer", rows, columns))


def _speed(stats: Any) -> str:
    return f"{stats.seconds:.1f} s ({stats.lines / max(stats.seconds, 1e-9):,.0f} lines/s)"


@click.command()
@recipe_options
@click.argument("files", nargs=-1, metavar="[FILES]...")
@click.option(
    "--type",
    "type_",
    type=click.Choice([t.value for t in TokenizerType]),
    default=None,
    help="Subword model (tokenizer.type; default bpe).",
)
@click.option(
    "--vocab-size",
    type=click.IntRange(min=1),
    default=None,
    help="Target vocabulary size, specials included (tokenizer.vocab_size; default 8000).",
)
@click.option(
    "--min-frequency",
    type=click.IntRange(min=1),
    default=None,
    help="Minimum pair frequency to merge, bpe/wordpiece (tokenizer.min_frequency; default 2).",
)
@click.option(
    "--lowercase/--no-lowercase", default=None, help="Lowercase all text (tokenizer.lowercase)."
)
@click.option(
    "--nfkc/--no-nfkc",
    default=None,
    help="NFKC unicode normalisation (tokenizer.nfkc; default on).",
)
@click.option(
    "--pre-tokenizer",
    type=click.Choice([p.value for p in PreTokenizer]),
    default=None,
    help="metaspace (sentencepiece-style) or byte_level (never <unk>) (tokenizer.pre_tokenizer).",
)
@click.option(
    "--max-lines",
    type=click.IntRange(min=0),
    default=None,
    help="Train on the first N lines, split evenly over the files (with --trainer "
    "sentencepiece: a random sample of N lines); 0 = all (tokenizer.max_lines).",
)
@click.option(
    "--trainer",
    type=click.Choice([t.value for t in Trainer]),
    default=None,
    help="Who learns the vocabulary: tokenizers (default) or sentencepiece (bpe/unigram; "
    "3-5x faster; still saved as tokenizer.json that encodes exactly like it) "
    "(tokenizer.trainer). Example: tfcli tokenize corpus.txt --trainer sentencepiece",
)
@click.option(
    "--from-spm",
    "from_spm",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE.model",
    help="Import an existing sentencepiece model (bpe/unigram) instead of training; its "
    "<pad> <unk> <s> </s> <mask> must be its ids 0-4 (any order). "
    "Example: tfcli tokenize --from-spm spm.model -o tok/tokenizer.json",
)
@click.option(
    "--separate",
    is_flag=True,
    default=False,
    help="One vocabulary per side from data.src / data.tgt (tokenizer.joint: false, "
    "model.share_embeddings: false).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Tokenizer file to write (default RUN_DIR/tokenizer.json; with --separate "
    "NAME.src.json and NAME.tgt.json).",
)
@click.option(
    "--show",
    "show",
    multiple=True,
    metavar="TEXT",
    help="Print how TEXT is split into pieces and ids (repeatable); no training.",
)
@click.option(
    "--tokenizer",
    "tok_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The tokenizer --show uses (default: -o, else RUN_DIR/tokenizer.json).",
)
def tokenize(
    recipe: str | None,
    overrides: tuple[str, ...],
    run_dir: str | None,
    files: tuple[str, ...],
    type_: str | None,
    vocab_size: int | None,
    min_frequency: int | None,
    lowercase: bool | None,
    nfkc: bool | None,
    pre_tokenizer: str | None,
    max_lines: int | None,
    trainer: str | None,
    from_spm: Path | None,
    separate: bool,
    output: Path | None,
    show: tuple[str, ...],
    tok_path: Path | None,
) -> None:
    """Train a subword vocabulary (BPE, WordPiece or Unigram) on raw text files.

    Inputs are FILES (globs and .gz welcome), or the recipe's data.src + data.tgt (+ data.text)
    for one joint vocabulary. The first argument is read as a recipe when it ends in .yaml/.yml
    or names a bundled recipe; every other argument is an input file. Special tokens
    <pad> <unk> <s> </s> <mask> always get ids 0-4. Writes tokenizer.json, a readable
    tokenizer.vocab.txt (id TAB piece) and tokenizer.meta.json (what it was trained from, so
    `tfcli train` knows when to retrain).

    \b
    Examples:
      tfcli tokenize corpus.txt --vocab-size 16000 -o tok/tokenizer.json
      tfcli tokenize 'data/*.txt.gz' --type unigram --pre-tokenizer byte_level
      tfcli tokenize demo-tiny                       # the recipe's data, into its run_dir
      tfcli tokenize my.yaml --separate --set tokenizer.vocab_size=32000
      tfcli tokenize corpus.txt --trainer sentencepiece --type unigram
      tfcli tokenize --from-spm opus-mt.model -o tok/tokenizer.json
      tfcli tokenize --tokenizer tok/tokenizer.json --show "Hello world"
    """
    # Over 60 lines only by its click parameters and help text; the body just dispatches.
    if recipe is not None and not _is_recipe(recipe):
        files, recipe = (recipe, *files), None
    flags = {
        "tokenizer.type": type_,
        "tokenizer.vocab_size": vocab_size,
        "tokenizer.min_frequency": min_frequency,
        "tokenizer.lowercase": lowercase,
        "tokenizer.nfkc": nfkc,
        "tokenizer.pre_tokenizer": pre_tokenizer,
        "tokenizer.max_lines": max_lines,
        "tokenizer.trainer": trainer,
        "tokenizer.joint": False if separate else None,
        # Two vocabularies cannot share one embedding matrix; without this the recipe is invalid.
        "model.share_embeddings": False if separate else None,
    }
    r = load_recipe(recipe, overrides, run_dir, **flags)
    if show:
        default = output if output is not None else RunDir(r.run_dir).tokenizer
        _show(tok_path or default, show)
        return
    if from_spm is not None:
        _import(r, files, from_spm, output)
        return
    _train(r, files, output)


def _import(r: schema.Recipe, files: tuple[str, ...], model: Path, output: Path | None) -> None:
    """--from-spm: convert an existing sentencepiece .model into the joint tokenizer.json."""
    from tfcli.tokenizer.spm import import_model, save_model
    from tfcli.tokenizer.staleness import write_import_meta
    from tfcli.tokenizer.vocab import check_specials, save_tokenizer

    if files or not r.tokenizer.joint:
        raise TfcliError(
            "--from-spm imports one existing model: drop the input FILES and --separate"
        )
    path = _output(output, r.run_dir)
    tok = import_model(model)
    check_specials(tok, str(model))
    save_tokenizer(tok, path)
    save_model(model.read_bytes(), path)  # `tfcli encode` encodes with it (same ids, faster)
    write_import_meta(path, model)  # `tfcli train` keeps it instead of retraining
    console.success(
        f"wrote {path} (+ .vocab.txt, .spm.model, .meta.json): {tok.get_vocab_size():,} "
        "pieces imported "
        f"from {model}"
    )


def _train(r: schema.Recipe, files: tuple[str, ...], output: Path | None) -> None:
    from tfcli.textio import expand_inputs
    from tfcli.tokenizer.training import build_tokenizers, training_inputs

    cfg = r.tokenizer
    if files:
        if not cfg.joint:
            raise TfcliError(
                "--separate (tokenizer.joint: false) reads data.src and data.tgt from the recipe; "
                "drop the FILES arguments or train one joint vocabulary"
            )
        paths_in = expand_inputs(list(files), "tokenizer input")
        inputs = {"src": paths_in, "tgt": paths_in}
    else:
        inputs = training_inputs(r.data, cfg.joint)
    if cfg.path:
        console.warn(
            f"the recipe's tokenizer.path ({cfg.path}) is ignored: tokenize trains a new one"
        )
    paths = side_paths(_output(output, r.run_dir), cfg.joint)
    n_files = len({p for side in inputs.values() for p in side})
    console.step(
        f"tokenize: training a {cfg.vocab_size:,}-piece {cfg.type.value} vocabulary on {n_files} file(s)"
    )
    results = build_tokenizers(inputs, cfg, paths)
    _summary(results, paths, cfg)
    written = sorted({str(p) for p in paths.values()})
    console.success(f"wrote {', '.join(written)} (+ .vocab.txt, .meta.json)")
