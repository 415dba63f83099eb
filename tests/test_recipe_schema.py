"""The recipe schema: every key documented, defaults independent between recipes, re-exported."""

from __future__ import annotations

import dataclasses

from tfcli import recipe, recipe_schema
from tfcli.recipe_schema import SECTIONS, Recipe


def test_every_key_has_a_help_text():
    rows = recipe.field_docs()
    assert len(rows) > 80
    assert [key for key, _, _, help_ in rows if not help_.strip()] == []


def test_sections_are_the_recipe_fields_and_list_defaults_are_not_shared():
    assert [f.name for f in dataclasses.fields(Recipe)] == ["run_dir", *SECTIONS]
    a, b = Recipe(), Recipe()
    a.data.src.append("x.txt")
    a.optim.betas[0] = 0.5
    assert b.data.src == [] and b.optim.betas == [0.9, 0.98]


def test_recipe_reexports_the_schema():
    for name in dir(recipe_schema):
        obj = getattr(recipe_schema, name)
        if not name.startswith("_") and getattr(obj, "__module__", None) == recipe_schema.__name__:
            assert getattr(recipe, name) is obj and name in recipe.__all__, name
