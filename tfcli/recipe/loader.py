"""YAML recipes -> typed dataclasses: files, bundled names, overrides, and back to YAML.

A recipe has one section per pipeline stage (`data`, `tokenizer`, `model`, `optim`, `train`,
`mlm`, `decode`) and one `run_dir` where every artefact of a run lands. Every field has a default,
so an empty recipe is valid and plain CLI flags can stand in for a file. Parsing uses
`yaml.safe_load` only; problems (unknown keys with a "did you mean", wrong types with the YAML
path and the expected type, then the cross-field checks) are collected and reported together in
one `RecipeError`.

Dotted overrides (`train.max_steps=100`) and typed flag values are applied to the raw mapping
before validation, so they are checked exactly like the file's own values.

The classes are tfcli.recipe.schema's, the typed parser tfcli.recipe.parse's and the
cross-field rules tfcli.recipe.checks'.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tfcli.errors import RecipeError
from tfcli.recipe.checks import recipe_problems
from tfcli.recipe.parse import build, suggest, type_name
from tfcli.recipe.schema import Recipe


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.max_steps=100' -> (['train', 'max_steps'], 100); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError([f"override '{text}' is not of the form section.key=value"], "--set")
    try:
        parsed = bounded_yaml(value, "--set") if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set dotted keys in a raw recipe mapping (copied), before validation."""
    raw = dict(raw)
    problems = []
    for text in overrides:
        keys, value = parse_override(text)
        blocked = _set_path(raw, keys, value)
        if blocked:
            problems.append(f"override '{text}': '{blocked}' is not a section")
    if problems:
        raise RecipeError(problems, "--set")
    return raw


def _set_path(raw: dict, keys: list[str], value: Any) -> str | None:
    """raw[k0][k1]... = value, copying each section on the way (the caller's stays as it was).
    Returns the key that holds a value rather than a section (nothing is set then)."""
    node = raw
    for k in keys[:-1]:
        child = node.get(k)
        if child is not None and not isinstance(child, dict):
            return k
        node[k] = dict(child or {})
        node = node[k]
    node[keys[-1]] = value
    return None


def from_dict(raw: Any, source: str = "recipe") -> Recipe:
    """A Recipe from plain data (parsed YAML); a RecipeError lists every problem at once."""
    problems: list[str] = []
    recipe = build(Recipe, raw, "", problems)
    if not problems:
        problems = recipe_problems(recipe)
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
    hint = suggest(p.stem, names) if names else ""
    raise RecipeError(
        [f"no such file, and no bundled recipe of that name{hint}; `tfcli recipes` lists them"],
        str(name_or_path),
    )


MAX_RECIPE_CHARS = 1 << 20
MAX_NODES = 100_000  # scalars + collections after expanding aliases; real recipes have < 500
MAX_DEPTH = 32


def bounded_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load` with limits: aliases are counted as the copies they stand for, so a
    "billion laughs" document (nested aliases, each expanding the last) is refused at once,
    as is a recursive alias or nesting deeper than MAX_DEPTH."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_size(root: yaml.Node, source: str) -> None:
    sizes: dict[int, int] = {}  # id(node) -> expanded size; a shared (aliased) node is sized once

    def size(node: yaml.Node, depth: int, open_: set[int]) -> int:
        if depth > MAX_DEPTH:
            raise RecipeError([f"nested deeper than {MAX_DEPTH} levels"], source)
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise RecipeError(["a YAML alias refers to itself (recursive anchor)"], source)
        open_.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        total = 1
        for child in children:
            total += size(child, depth + 1, open_)
            if total > MAX_NODES:
                raise RecipeError(
                    [
                        f"expands to more than {MAX_NODES:,} values (YAML aliases?); "
                        "a recipe is a few hundred"
                    ],
                    source,
                )
        open_.discard(key)
        sizes[key] = total
        return total

    size(root, 0, set())


def read_raw(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError([f"cannot read: {e}"], str(path)) from None
    if len(text) > MAX_RECIPE_CHARS:
        raise RecipeError(
            [f"{len(text):,} characters is too large for a recipe (limit {MAX_RECIPE_CHARS:,})"],
            str(path),
        )
    try:
        raw = bounded_yaml(text, str(path))
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
    `from_dict` then checks them like the file's own values (a section the file wrote as a
    plain value is left for it to report)."""
    raw = dict(raw)
    for key, value in values.items():
        if value is not None:
            _set_path(
                raw, key.split("."), to_dict(list(value) if isinstance(value, tuple) else value)
            )
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
            rows.append((key, type_name(tp), repr(to_dict(default)), f.metadata.get("help", "")))

    walk(Recipe, "")
    return rows
