"""Recipe parsing, overrides and the all-problems-at-once error report."""

from __future__ import annotations

import pytest
import yaml

from tfcli.errors import RecipeError
from tfcli.model.config import Positions
from tfcli.recipe import loader as recipe
from tfcli.recipe.schema import Recipe, TokenizerType


def test_empty_recipe_is_all_defaults():
    r = recipe.from_dict({})
    assert r == Recipe()
    assert r.tokenizer.type is TokenizerType.BPE
    assert r.model.positions is Positions.SINUSOIDAL


@pytest.mark.parametrize("name", recipe.bundled_names())
def test_every_bundled_recipe_validates(name):
    path = recipe.resolve_path(name)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), f"{name}: a recipe opens with a comment saying what it is for"
    assert "tfcli " in text.split("\n\n")[0], f"{name}: the header gives the command that runs it"
    r = recipe.load(name)
    # Resolving and re-parsing the dump gives the same recipe (no lossy fields).
    assert recipe.from_dict(yaml.safe_load(recipe.to_yaml(r))) == r


def test_file_and_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(
        "run_dir: runs/x\nmodel:\n  d_model: 128\n  n_heads: 4\ndata:\n  src: a.txt\n",
        encoding="utf-8",
    )
    r = recipe.load(str(p), ["model.d_model=256", "train.max_steps=7", "optim.betas=[0.9, 0.99]"])
    assert r.run_dir == "runs/x"
    assert r.model.d_model == 256 and r.model.n_heads == 4
    assert r.train.max_steps == 7
    assert r.optim.betas == [0.9, 0.99]
    assert r.data.src == ["a.txt"], "a single path is promoted to a list"
    assert recipe.load(None, ["optim.lr=2e-3"]).optim.lr == 2e-3, "YAML 1.1 reads 2e-3 as a string"
    with pytest.raises(RecipeError, match="optim.lr: expected a number"):
        recipe.load(None, ["optim.lr=fast"])


def test_all_problems_reported_at_once_with_suggestions():
    raw = {
        "model": {"d_modle": 3, "n_heads": "four"},
        "tokenizer": {"type": "bpx"},
        "trian": {},
    }
    with pytest.raises(RecipeError) as e:
        recipe.from_dict(raw, "r.yaml")
    problems = e.value.problems
    assert len(problems) == 4
    text = str(e.value)
    assert "did you mean 'model.d_model'" in text
    assert "did you mean 'train'" in text
    assert "model.n_heads: expected an integer, got 'four'" in text
    assert "tokenizer.type: expected one of 'bpe', 'wordpiece', 'unigram'" in text
    assert "\n" not in text, "one line"


def test_bad_override_syntax_and_non_section():
    with pytest.raises(RecipeError, match="not of the form"):
        recipe.load(None, ["train.max_steps"])
    with pytest.raises(RecipeError, match="run_dir: expected a string"):
        recipe.load(None, ["run_dir.x=1"])
    with pytest.raises(RecipeError, match="'run_dir' is not a section"):
        recipe.load(None, ["run_dir=a", "run_dir.x=1"])


def test_invalid_yaml_reports_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  d_model: [1, 2\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"line \d+, column \d+: invalid YAML"):
        recipe.load(str(p))


def test_yaml_is_data_not_code(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("run_dir: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="invalid YAML"):
        recipe.load(str(p))


def test_top_level_must_be_mapping(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="expected a mapping"):
        recipe.load(str(p))


def test_unknown_recipe_name_suggests():
    names = recipe.bundled_names()
    if not names:
        pytest.skip("no bundled recipes yet")
    with pytest.raises(RecipeError, match="tfcli recipes"):
        recipe.load(names[0] + "x")


def test_field_docs_cover_every_field():
    rows = recipe.field_docs()
    keys = {k for k, *_ in rows}
    assert "model.d_model" in keys and "run_dir" in keys and "mlm.mask_prob" in keys
    assert all(help_ for *_, help_ in rows), "every field has a help text"


def test_alias_bomb_and_recursive_alias_are_refused_fast(tmp_path):
    import time

    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\ndata: {src: *a9}\n", encoding="utf-8")
    loop = tmp_path / "loop.yaml"
    loop.write_text("data: &a {src: [x, *a]}\n", encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(RecipeError, match="expands to more than 100,000 values"):
        recipe.load(str(bomb))
    with pytest.raises(RecipeError, match="refers to itself"):
        recipe.load(str(loop))
    levels = ["&a0 [l, l, l, l, l, l, l, l, l]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(RecipeError, match="--set: expands to more than"):
        recipe.load(None, [f"data.src=[{', '.join(levels)}]"])
    assert time.perf_counter() - start < 1.0


def test_aliases_within_limits_still_work(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("data:\n  src: &files [a.txt]\n  valid_src: *files\n", encoding="utf-8")
    assert recipe.load(str(f)).data.valid_src == ["a.txt"]


def test_nesting_depth_and_size_are_bounded(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("data: " + "[" * 40 + "]" * 40 + "\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="nested deeper than 32"):
        recipe.load(str(deep))
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="too large for a recipe"):
        recipe.load(str(big))
