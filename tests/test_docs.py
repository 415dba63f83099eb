"""Documentation that cannot rot: the README's recipe reference is generated from the code."""

from __future__ import annotations

from pathlib import Path

from tfcli.recipe import docgen

ROOT = Path(__file__).resolve().parents[1]


def test_readme_recipe_reference_is_current():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docgen.render_block() in text, (
        "README.md's recipe reference is stale: run `python -m tfcli.recipe.docgen README.md`"
    )


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
