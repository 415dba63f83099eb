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


def test_architecture_names_every_module_and_package_says_what_it_owns():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    tree = text.split("## Tree", 1)[1].split("## Conventions", 1)[0]
    package = ROOT / "tfcli"
    missing = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name != "__init__.py" and p.name != "__main__.py" and p.stem not in tree
    ]
    assert missing == [], f"docs/ARCHITECTURE.md's tree lacks {missing}"
    for init in package.rglob("__init__.py"):
        doc = init.read_text(encoding="utf-8").strip()
        assert doc.startswith('"""') and len(doc) > 80, f"{init} says what the package owns"
