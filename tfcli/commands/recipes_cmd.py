"""`tfcli recipes` and `tfcli validate`."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from tfcli import console
from tfcli.commands.options import load_recipe, recipe_options
from tfcli.errors import TfcliError
from tfcli.recipe import loader as recipe_mod


def _first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


@click.command()
@click.argument("name", required=False)
@click.option(
    "--copy", "dest", type=click.Path(), default=None, help="Copy the named recipe to this path."
)
def recipes(name: str | None, dest: str | None) -> None:
    """List the bundled recipes, show one, or copy one to edit.

    \b
    Examples:
      tfcli recipes                                  # list them
      tfcli recipes transformer-small                # print one
      tfcli recipes transformer-small --copy my.yaml # start your own from it
    """
    if name is None:
        rows = [
            (n, _first_comment(recipe_mod.bundled_dir() / f"{n}.yaml"))
            for n in recipe_mod.bundled_names()
        ]
        console.show(console.table("Bundled recipes", rows, ["name", "what it is for"]))
        return
    path = recipe_mod.resolve_path(name)
    if dest is None:
        console.out.print(path.read_text(encoding="utf-8"), end="", markup=False)
        return
    target = Path(dest)
    if target.is_dir():
        target = target / path.name
    if target.exists():
        raise TfcliError(f"{target} already exists; choose another path or remove it first")
    try:
        shutil.copyfile(path, target)
    except OSError as e:
        raise TfcliError(f"cannot write {target}: {e.strerror}; choose another path") from None
    console.success(f"copied {path.name} to {target}")


@click.command()
@recipe_options
def validate(recipe: str | None, overrides: tuple[str, ...], run_dir: str | None) -> None:
    """Check a recipe (and overrides) and print it fully resolved.

    All problems are reported at once: unknown keys with the closest valid name, wrong types
    with the YAML path and the expected type.

    \b
    Examples:
      tfcli validate my.yaml
      tfcli validate transformer-small --set train.max_tokens=8192
    """
    r = load_recipe(recipe, overrides, run_dir)
    console.out.print(recipe_mod.to_yaml(r), end="", markup=False)
    console.success(f"{recipe or 'defaults'}: valid")
