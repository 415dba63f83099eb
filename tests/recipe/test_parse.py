"""The typed parser: plain data -> dataclasses, every problem collected with its dotted path."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tfcli.recipe.parse import build, knob, type_name


class Colour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    size: int = knob(1, "a size")
    rate: float = knob(0.5, "a rate")


@dataclass
class Outer:
    name: str  # required: no default
    colour: Colour = knob(Colour.RED, "red | blue")
    files: list[str] = knob([], "paths")
    limit: int | None = knob(None, "a limit or null")
    inner: Inner = field(default_factory=Inner)


def test_values_are_typed_and_defaults_fill_the_rest():
    problems: list[str] = []
    got = build(
        Outer,
        {"name": "x", "colour": "blue", "files": "a.txt", "inner": {"rate": "2e-3"}},
        "",
        problems,
    )
    assert problems == []
    assert got == Outer("x", Colour.BLUE, ["a.txt"], None, Inner(1, 0.002))
    assert got.colour is Colour.BLUE, "enums by value; a single string becomes a list"


def test_every_problem_is_reported_with_its_path():
    problems: list[str] = []
    raw = {"colour": "green", "limt": 3, "inner": {"size": True, "rate": "fast"}}
    assert build(Outer, raw, "top", problems) is None, "a required field is missing"
    assert problems == [
        "top.colour: expected one of 'red', 'blue', got 'green'",
        "unknown key 'top.limt' (did you mean 'top.limit'?)",
        "top.inner.size: expected an integer, got True",
        "top.inner.rate: expected a number, got 'fast'",
        "missing key 'top.name'",
    ]


def test_type_names_read_as_in_the_docs():
    assert type_name(int) == "an integer"
    assert type_name(list[float]) == "a list of numbers"
    assert type_name(str | None) == "a string or null"
    assert type_name(Colour) == "one of 'red', 'blue'"


def test_list_defaults_are_not_shared():
    a, b = Outer("a"), Outer("b")
    a.files.append("x")
    assert b.files == []
