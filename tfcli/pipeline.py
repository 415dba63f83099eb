"""Run the earlier pipeline stages when their output is missing or stale.

`train` and `pretrain-mlm` call these first, so one command goes from raw text to a model:

* `ensure_tokenizer` trains the run's tokenizer(s) unless `tokenizer.meta.json` says they were
  trained from the same settings and the same input files (path, size, mtime);
* `ensure_encoded` encodes each split of the recipe into `RUN_DIR/data/<split>` unless its
  meta.json records the same tokenizer (sha256), the same inputs and the same length filters.

Each says what it does, and why, through `tfcli.console.step`. What "stale" means is decided
beside each record: `tfcli.tokenizer.staleness.retrain_reason` for tokenizers and
`tfcli.data.staleness.reencode_reason` for splits. Splits and their recipe keys:

    parallel: train (data.src, data.tgt), valid (data.valid_src, data.valid_tgt),
              test (data.test_src, data.test_tgt)
    text:     train (data.text), valid (data.valid_text)

Length filters: the parallel train split uses data.min_len / max_len / max_len_ratio. Valid and
test keep every pair the model can hold (at most model.max_positions - 1 tokens a side, for the
specials collate adds), so scores stay comparable. Text splits drop lines shorter than
data.min_len and keep long ones: pretrain-mlm packs or truncates them to mlm.block_size itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from tfcli import console
from tfcli.errors import DataError, RecipeError
from tfcli.recipe.schema import Recipe
from tfcli.run_dir import RunDir, side_paths

Kind = Literal["parallel", "text"]

# split -> (recipe keys per side); the train split is required
_SPLITS: dict[str, dict[str, dict[str, str]]] = {
    "parallel": {
        "train": {"src": "src", "tgt": "tgt"},
        "valid": {"src": "valid_src", "tgt": "valid_tgt"},
        "test": {"src": "test_src", "tgt": "test_tgt"},
    },
    "text": {"train": {"text": "text"}, "valid": {"text": "valid_text"}},
}


def _check_kind(kind: str) -> None:
    if kind not in _SPLITS:
        raise ValueError(f"kind must be 'parallel' or 'text', got {kind!r}")


def tokenizer_files(recipe: Recipe, kind: Kind) -> dict[str, Path]:
    """Where the recipe's tokenizer(s) are, trained or not: {"src", "tgt"} or {"text"}.

    tokenizer.path when set (for a separate vocabulary, PATH.src.json and PATH.tgt.json), else
    RUN_DIR/tokenizer.json (or tokenizer.src.json / tokenizer.tgt.json).
    """

    _check_kind(kind)
    joint = recipe.tokenizer.joint
    if kind == "text" and not joint:
        raise RecipeError(
            ["tokenizer.joint: pretrain-mlm needs one joint vocabulary; set tokenizer.joint: true"]
        )
    if recipe.tokenizer.path:
        paths = side_paths(Path(recipe.tokenizer.path), joint)
    else:
        paths = RunDir(recipe.run_dir).tokenizers(joint)
    return {"text": paths["src"]} if kind == "text" else paths


def ensure_tokenizer(recipe: Recipe, *, kind: Kind) -> dict[str, Path]:
    """Train the run's tokenizer(s) when missing or stale; returns the paths (tokenizer_files).

    With tokenizer.path set, that file is used as is (TokenizerError if missing or invalid).
    With train.init_from (fine-tuning), the checkpoint's own tokenizer is copied into the run dir
    and a recipe that asks for another is refused (tfcli.checkpoints.finetune).
    """
    from tfcli.tokenizer.staleness import retrain_reason
    from tfcli.tokenizer.training import build_tokenizers, training_inputs
    from tfcli.tokenizer.vocab import load_tokenizer

    if recipe.train.init_from:
        from tfcli.checkpoints.finetune import ensure_checkpoint_tokenizers

        return ensure_checkpoint_tokenizers(recipe, kind)
    paths = tokenizer_files(recipe, kind)
    if recipe.tokenizer.path:
        for p in dict.fromkeys(paths.values()):
            load_tokenizer(p)  # one clear error now rather than in the middle of encoding
        return paths
    cfg = recipe.tokenizer
    sides = RunDir(recipe.run_dir).tokenizers(cfg.joint)
    inputs = training_inputs(recipe.data, cfg.joint)
    reason = retrain_reason(sides, inputs, cfg)
    if reason is None:
        console.info(f"tokenize: {_names(sides)} up to date")
        return paths
    n = len({p for files in inputs.values() for p in files})
    what = f"{cfg.vocab_size:,}-piece {cfg.type.value}"
    console.step(f"tokenize: {reason}; training a {what} vocabulary on {n} file(s)")
    build_tokenizers(inputs, cfg, sides, show_progress=True)
    console.success(f"tokenize: wrote {_names(sides)}")
    return paths


def _names(paths: dict[str, Path]) -> str:
    return ", ".join(str(p) for p in dict.fromkeys(paths.values()))


def _split_inputs(recipe: Recipe, kind: Kind) -> dict[str, dict[str, list[Path]]]:
    """split -> side -> files, for the splits the recipe names; one clear line when one is
    half-given or the required train split is missing."""
    from tfcli.textio import expand_inputs

    out: dict[str, dict[str, list[Path]]] = {}
    for split, keys in _SPLITS[kind].items():
        given = {side: getattr(recipe.data, key) for side, key in keys.items()}
        if not any(given.values()):
            if split == "train":
                need = " and ".join(f"data.{k}" for k in keys.values())
                raise DataError(
                    f"no training data: set {need} in the recipe (or --set data.{next(iter(keys.values()))}=FILE)"
                )
            continue
        for side, patterns in given.items():
            if not patterns:
                other = next(k for s, k in keys.items() if s != side)
                raise DataError(
                    f"data.{other} is set but data.{keys[side]} is not; set both or neither"
                )
        out[split] = {
            side: expand_inputs(pats, f"data.{keys[side]}") for side, pats in given.items()
        }
    return out


def _filters(recipe: Recipe, kind: Kind, split: str) -> dict:
    d = recipe.data
    if kind == "text":
        return {"min_len": d.min_len, "max_len": 0}
    if split == "train":
        return {"min_len": d.min_len, "max_len": d.max_len, "max_len_ratio": d.max_len_ratio}
    return {"min_len": 0, "max_len": recipe.model.max_positions - 1, "max_len_ratio": 0.0}


def _sampling(recipe: Recipe, kind: Kind, split: str) -> dict:
    """For the parallel train split: corpus weights per file pair (data.weights, given per
    data.src entry, which may be a glob) and the BPE-dropout copies (data.bpe_dropout)."""
    from tfcli.data.encoding import Dropout
    from tfcli.textio import expand_inputs

    d = recipe.data
    if kind != "parallel" or split != "train":
        return {}
    out: dict = {"weights": None, "dropout": None}
    if d.bpe_dropout > 0:
        out["dropout"] = Dropout(d.bpe_dropout, d.bpe_dropout_copies, recipe.train.seed)
    if d.weights:
        per_file: list[float] = []
        for i, (src, tgt, w) in enumerate(zip(d.src, d.tgt, d.weights, strict=True)):
            n = len(expand_inputs([src], f"data.src[{i}]"))
            if n != len(expand_inputs([tgt], f"data.tgt[{i}]")):
                raise DataError(
                    f"data.weights: data.src[{i}] ({src}) and data.tgt[{i}] ({tgt}) match "
                    "different numbers of files; a weighted entry must pair its files one to one"
                )
            per_file += [w] * n
        out["weights"] = per_file
    return out


def _reweigh(out: Path, weights: list[float]) -> str | None:
    """Bring a current split's recorded corpus weights up to date (no re-encoding); the reason
    to re-encode when it has no per-corpus counts (encoded by an older tfcli)."""
    from tfcli.data import encoding
    from tfcli.data.split import read_meta

    corpora = read_meta(out).get("corpora")
    if not corpora or len(corpora) != len(weights):
        uniform = all(w == 1.0 for w in weights)
        return None if uniform else "it records no per-corpus counts for the weights"
    if [c.get("weight") for c in corpora] != weights:
        encoding.reweigh(out, weights)
        console.info(f"encode: {out}: corpus weights set to {', '.join(f'{w:g}' for w in weights)}")
    return None


def ensure_encoded(recipe: Recipe, *, kind: Kind, force: bool = False) -> dict[str, Path]:
    """Encode each split the recipe names into RUN_DIR/data/<split> when missing or stale
    (or always, with `force`).

    Returns split -> directory ("train" always; "valid", "test" when the recipe names them).
    The tokenizer must exist (call ensure_tokenizer first).
    """
    from tfcli.data import encoding
    from tfcli.data.staleness import reencode_reason
    from tfcli.tokenizer.staleness import file_sha256

    toks = tokenizer_files(recipe, kind)
    for p in dict.fromkeys(toks.values()):
        if not p.is_file():
            raise DataError(f"tokenizer not found: {p}; train it first with `tfcli tokenize`")
    shas = {side: file_sha256(p) for side, p in toks.items()}
    run = RunDir(recipe.run_dir)
    result: dict[str, Path] = {}
    current: list[str] = []
    for split, files in _split_inputs(recipe, kind).items():
        out = run.split(split)
        filters = _filters(recipe, kind, split)
        extra = _sampling(recipe, kind, split)  # train split: weights, BPE-dropout copies
        dropout = extra["dropout"].record() if extra.get("dropout") else None
        reason = "--force" if force else reencode_reason(out, kind, files, shas, filters, dropout)
        result[split] = out
        if reason is None and "weights" in extra:  # the train split: weights are cheap to change
            reason = _reweigh(out, extra["weights"] or [1.0] * len(files["src"]))
        if reason is None:
            current.append(split)
            continue
        n = sum(len(f) for f in files.values())
        console.step(f"encode: {split} split ({reason}); {n} file(s) -> {out}")
        if kind == "parallel":
            meta = encoding.encode_parallel(
                files["src"], files["tgt"], toks["src"], toks["tgt"], out, overwrite=True,
                **filters, **extra,
            )  # fmt: skip
        else:
            meta = encoding.encode_text(files["text"], toks["text"], out, overwrite=True, **filters)
        console.success(f"encode: {split}: {summary_line(meta)}")
    if current:
        console.info(f"encode: {', '.join(current)} up to date in {run.data}")
    return result


def summary_line(meta: dict) -> str:
    """'12,345 examples, 456,789 tokens (src) / ..., 1,234 dropped, 2.1 M tokens/s'."""
    tokens = sum(meta["num_tokens"].values())
    per_side = " + ".join(f"{n:,} {s}" for s, n in meta["num_tokens"].items())
    dropped = sum(meta["dropped"].values())
    speed = tokens / max(meta.get("seconds", 0.0), 1e-9)
    text = f"{meta['num_examples']:,} examples, {per_side} tokens"
    if dropped:
        text += f", {dropped:,} dropped"
    corpora = meta.get("corpora") or []
    if any(c.get("weight", 1.0) != 1.0 for c in corpora):
        weighted = sum(c["weight"] * c["examples"] for c in corpora)
        parts = ", ".join(f"{c['weight']:g} x {c['examples']:,}" for c in corpora)
        text += f", weighted {parts} = {weighted:,.0f} pairs per epoch"
    if meta.get("dropout"):
        text += f", {meta['dropout']['copies']} BPE-dropout copies (p {meta['dropout']['p']:g})"
    return text + f", {speed / 1e6:.2f} M tokens/s"
