"""Plain data (parsed YAML or JSON) -> typed dataclasses, every problem collected.

The one typed parser: recipes (`loader.from_dict`) and the model spec stored in checkpoints
(`ModelSpec.from_dict`) both go through `build`. Field types come from the annotations: bool,
int, float, str, enums (by value), `list[...]`, `X | None` and nested dataclasses. A problem is
one line naming the dotted path and the expected type; `build` keeps going after one, so a
caller reports them all at once.

This module knows no schema (tfcli.recipe.schema imports the model's fields, and the model's
spec imports this), so it imports nothing from tfcli.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import types
import typing
from typing import Any


def knob(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with a one-line help text (the README's recipe reference, `validate`).

    A list default is copied for each instance."""
    if isinstance(default, list):
        return dataclasses.field(
            default_factory=lambda d=default: list(d), metadata={"help": help}, **kw
        )
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def type_name(tp: Any) -> str:
    """How an annotation reads in messages and docs: 'an integer', "one of 'relu', 'gelu'"."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    origin = typing.get_origin(tp)
    if origin is list:
        (arg,) = typing.get_args(tp)
        plural = {int: "integers", float: "numbers", str: "strings"}.get(arg, type_name(arg))
        return f"a list of {plural}"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return type_name(args[0]) + " or null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Check `value` against the annotation `tp`; append a problem and return None on mismatch."""
    bad = f"{path}: expected {type_name(tp)}, got {value!r}"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return coerce(value, inner, path, problems)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if inner is str and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            problems.append(bad)
            return None
        return [coerce(v, inner, f"{path}[{i}]", problems) for i, v in enumerate(value)]
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
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads '2e-3' (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        if number is not None:  # .nan, .inf: no setting of tfcli means anything with them
            problems.append(f"{path}: expected a finite number, got {value!r}")
            return None
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    problems.append(bad)
    return None


def suggest(key: str, valid: list[str], prefix: str = "") -> str:
    """' (did you mean 'prefix.close'?)', or the valid names when nothing is close."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid: {', '.join(valid)})"


def build(cls: type, raw: Any, path: str, problems: list[str]) -> Any:
    """An instance of the dataclass `cls` from the mapping `raw` (None = all defaults).

    Unknown keys, values of the wrong type and missing required fields are appended to
    `problems` (dotted from `path`); fields with a problem keep their defaults. Returns None
    only when a required field (one without a default) is missing or invalid."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{path or 'recipe'}: expected a mapping of keys, got {raw!r}")
        return cls()
    dotted = f"{path}." if path else ""
    kwargs = {}
    for key, value in raw.items():
        where = f"{dotted}{key}"
        if key not in fields:
            problems.append(f"unknown key '{where}'{suggest(str(key), list(fields), dotted)}")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build(tp, value, where, problems)
        else:
            before = len(problems)
            coerced = coerce(value, tp, where, problems)
            if len(problems) == before:
                kwargs[key] = coerced
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    problems += [f"missing key '{dotted}{name}'" for name in required if name not in raw]
    if any(name not in kwargs for name in required):
        return None
    return cls(**kwargs)
