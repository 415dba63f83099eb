"""The recipe schema: every key documented, defaults independent between recipes."""

from __future__ import annotations

import dataclasses

from tfcli.recipe import loader as recipe
from tfcli.recipe.schema import SECTIONS, Recipe


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
