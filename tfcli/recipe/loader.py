"""YAML recipes -> typed dataclasses.

A recipe has one section per pipeline stage (`data`, `tokenizer`, `model`, `optim`, `train`,
`mlm`, `decode`) and one `run_dir` where every artefact of a run lands. Every field has a default,
so an empty recipe is valid and plain CLI flags can stand in for a file. Parsing uses
`yaml.safe_load` only; problems (unknown keys with a "did you mean", wrong types with the YAML
path and the expected type) are collected and reported together in one `RecipeError`.

Dotted overrides (`train.max_steps=100`) are applied to the raw mapping before validation, so
they are checked exactly like the file's own values.

The dataclasses themselves live in tfcli.recipe.schema and are re-exported here: every module
imports recipe names from tfcli.recipe.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tfcli.errors import RecipeError
from tfcli.recipe.schema import (
    Positions,
    Recipe,
)

# --- parsing ---------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp)
        plural = {int: "integers", float: "numbers", str: "strings"}.get(arg, _type_name(arg))
        return f"a list of {plural}"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(args[0]) + " or null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Check `value` against the annotation `tp`; append a problem and return None on mismatch."""
    bad = f"{path}: expected {_type_name(tp)}, got {value!r}"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, inner, path, problems)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if inner is str and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            problems.append(bad)
            return None
        return [_coerce(v, inner, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            problems.append(bad)
            return None
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '2e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    problems.append(bad)
    return None


def _suggest(key: str, valid: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


def _build(cls: type, raw: Any, path: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{path or 'recipe'}: expected a mapping of keys, got {raw!r}")
        return cls()
    kwargs = {}
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(
                f"unknown key '{where}'{_suggest(str(key), list(fields), f'{path}.' if path else '')}"
            )
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, where, problems)
        else:
            before = len(problems)
            coerced = _coerce(value, tp, where, problems)
            if len(problems) == before:
                kwargs[key] = coerced
    return cls(**kwargs)


def _check_values(r: Recipe) -> list[str]:
    """Cross-field checks that types alone cannot express."""
    p = []
    positive = {
        "tokenizer.vocab_size": r.tokenizer.vocab_size,
        "model.d_model": r.model.d_model,
        "model.n_heads": r.model.n_heads,
        "model.d_ff": r.model.d_ff,
        "model.encoder_layers": r.model.encoder_layers,
        "model.max_positions": r.model.max_positions,
        "train.max_tokens": r.train.max_tokens,
        "train.accumulate": r.train.accumulate,
        "train.eval_every": r.train.eval_every,
        "train.log_every": r.train.log_every,
        "mlm.block_size": r.mlm.block_size,
        "mlm.batch_size": r.mlm.batch_size,
        "decode.beam_size": r.decode.beam_size,
        "decode.nbest": r.decode.nbest,
        "decode.max_tokens": r.decode.max_tokens,
    }
    p += [f"{k}: must be > 0, got {v}" for k, v in positive.items() if v <= 0]
    if r.model.n_heads > 0 and r.model.d_model % r.model.n_heads:
        p.append(
            f"model.d_model ({r.model.d_model}) must be divisible by model.n_heads ({r.model.n_heads})"
        )
    if (
        r.model.positions is Positions.ROTARY
        and r.model.n_heads > 0
        and (r.model.d_model // r.model.n_heads) % 2
    ):
        p.append("model.positions: rotary needs an even head size (d_model / n_heads)")
    if r.model.share_embeddings and not r.tokenizer.joint:
        p.append("model.share_embeddings: needs tokenizer.joint: true (one vocabulary to share)")
    for k in ("dropout", "attention_dropout"):
        v = getattr(r.model, k)
        if not 0.0 <= v < 1.0:
            p.append(f"model.{k}: must be in [0, 1), got {v}")
    if not 0.0 <= r.train.label_smoothing < 1.0:
        p.append(f"train.label_smoothing: must be in [0, 1), got {r.train.label_smoothing}")
    if len(r.optim.betas) != 2:
        p.append(f"optim.betas: expected two numbers, got {r.optim.betas}")
    if r.optim.lr <= 0:
        p.append(f"optim.lr: must be > 0, got {r.optim.lr}")
    if not 0.0 < r.mlm.mask_prob < 1.0:
        p.append(f"mlm.mask_prob: must be in (0, 1), got {r.mlm.mask_prob}")
    split = (r.mlm.replace_mask_prob, r.mlm.replace_random_prob, r.mlm.keep_prob)
    if any(x < 0 for x in split) or abs(sum(split) - 1.0) > 1e-6:
        p.append(
            "mlm: replace_mask_prob + replace_random_prob + keep_prob must be non-negative and "
            f"sum to 1, got {' + '.join(str(x) for x in split)} = {sum(split):g}"
        )
    if r.decode.temperature <= 0:
        p.append(f"decode.temperature: must be > 0, got {r.decode.temperature}")
    if not 0.0 < r.decode.top_p <= 1.0:
        p.append(f"decode.top_p: must be in (0, 1], got {r.decode.top_p}")
    if len(r.data.src) != len(r.data.tgt) and r.data.src and r.data.tgt:
        p.append(f"data.src has {len(r.data.src)} entries but data.tgt has {len(r.data.tgt)}")
    return p


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.max_steps=100' -> (['train', 'max_steps'], 100); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError([f"override '{text}' is not of the form section.key=value"], "--set")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a raw recipe mapping (copied), before validation."""
    raw = dict(raw)
    problems = []
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                problems.append(f"override '{text}': '{k}' is not a section")
                break
            node[k] = dict(child)
            node = node[k]
        else:
            node[keys[-1]] = value
    if problems:
        raise RecipeError(problems, "--set")
    return raw


def from_dict(raw: Any, source: str = "recipe") -> Recipe:
    problems: list[str] = []
    recipe = _build(Recipe, raw, "", problems)
    if not problems:
        problems = _check_values(recipe)
    if problems:
        raise RecipeError(problems, source)
    return recipe


def bundled_dir() -> Path:
    return Path(str(resources.files("tfcli") / "recipes"))


def bundled_names() -> list[str]:
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def resolve_path(name_or_path: str) -> Path:
    """A recipe path, or the name of a bundled recipe (with or without .yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = bundled_dir() / (p.name if p.suffix == ".yaml" else f"{p.name}.yaml")
    if p.parent == Path(".") and bundled.is_file():
        return bundled
    names = bundled_names()
    hint = _suggest(p.stem, names) if names else ""
    raise RecipeError(
        [f"no such file, and no bundled recipe of that name{hint}; `tfcli recipes` lists them"],
        str(name_or_path),
    )


def read_raw(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError([f"cannot read: {e}"], str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise RecipeError([f"{where}invalid YAML: {problem}"], str(path)) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RecipeError(
            [f"expected a mapping of sections at the top level, got {type(raw).__name__}"],
            str(path),
        )
    return raw


def set_values(raw: dict, values: Mapping[str, Any]) -> dict:
    """Set dotted keys in a raw recipe mapping (copied) to already-typed Python values (click
    flags): enums become their values, tuples lists; None means 'not given' and is skipped.
    `from_dict` then checks them like the file's own values."""
    raw = dict(raw)
    for key, value in values.items():
        if value is None:
            continue
        node = raw
        *parents, last = key.split(".")
        for k in parents:
            child = node.get(k)
            node[k] = dict(child) if isinstance(child, dict) else {}
            node = node[k]
        node[last] = to_dict(list(value) if isinstance(value, tuple) else value)
    return raw


def load(
    name_or_path: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    values: Mapping[str, Any] | None = None,
) -> Recipe:
    """Load a recipe file (or bundled name; None = all defaults), apply dotted `--set`
    overrides, then typed flag `values` ({"train.max_steps": 200}): a flag given wins."""
    raw: dict = {}
    source = "recipe"
    if name_or_path:
        path = resolve_path(name_or_path)
        raw = read_raw(path)
        source = str(name_or_path)
    raw = apply_overrides(raw, list(overrides))
    raw = set_values(raw, values or {})
    return from_dict(raw, source)


def to_dict(obj: Any) -> Any:
    """Plain data (enums as their values), ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False, allow_unicode=True)


def field_docs() -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) for every field, in declaration order."""
    rows = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".")
                continue
            default = (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            )
            rows.append((key, _type_name(tp), repr(to_dict(default)), f.metadata.get("help", "")))

    walk(Recipe, "")
    return rows
