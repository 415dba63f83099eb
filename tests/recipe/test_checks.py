"""The cross-field recipe checks: one message per problem, the model's named `model.<field>`."""

from __future__ import annotations

import re

import pytest

from tfcli.errors import RecipeError
from tfcli.model.config import ModelSpec
from tfcli.recipe import loader as recipe
from tfcli.recipe.checks import recipe_problems
from tfcli.recipe.schema import ModelConfig, Recipe


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.d_model=100", "model.d_model (100) must be divisible by model.n_heads (8)"),
        ("model.n_heads=0", "model.n_heads: must be > 0, got 0"),
        ("model.window=-1", "model.window: must be >= 0, got -1"),
        ("mlm.keep_prob=0.3", "sum to 1"),
        ("train.max_tokens=0", "train.max_tokens: must be > 0"),
        ("model.dropout=1.5", "model.dropout: must be in [0, 1)"),
        ("tokenizer.joint=false", "needs tokenizer.joint"),
        ("train.compile=maybe", "train.compile: expected true/false"),
        ("train.max_steps=-5", "train.max_steps: must be >= 0, got -5"),
        ("optim.lr=.nan", "optim.lr: expected a finite number, got nan"),
        ("optim.lr=.inf", "optim.lr: expected a finite number, got inf"),
        ("decode.max_len_a=-1", "decode.max_len_a: must be >= 0, got -1.0"),
        ("decode.max_len_b=-2", "decode.max_len_b: must be >= 0, got -2"),
        ("tokenizer.vocab_size=1000000000000", "tokenizer.vocab_size: at most 1,048,576"),
        ("train.keep_last=-1", "train.keep_last: must be >= 0"),
        ("optim.eps=0", "optim.eps: must be > 0"),
        ("tokenizer.vocab_size=4", "tokenizer.vocab_size: at least 6 for a metaspace"),
    ],
)
def test_value_checks(override, fragment):
    with pytest.raises(RecipeError, match=re.escape(fragment)):
        recipe.load(None, [override])


def test_rotary_needs_an_even_head_size():
    with pytest.raises(RecipeError, match=re.escape("model.positions: rotary needs an even head")):
        recipe.load(None, ["model.positions=rotary", "model.d_model=24", "model.n_heads=8"])


def test_defaults_pass_and_problems_are_collected():
    assert recipe_problems(Recipe()) == []
    bad = Recipe(model=ModelConfig(d_model=0, dropout=-0.1))
    assert recipe_problems(bad) == [
        "model.d_model: must be > 0, got 0",
        "model.dropout: must be in [0, 1), got -0.1",
    ]


def test_the_recipe_and_a_checkpoint_spec_run_the_same_model_checks():
    cfg = ModelConfig(d_model=30, n_heads=4, attention_dropout=1.0)
    spec = ModelSpec("mlm", 50, 50, d_model=30, n_heads=4, attention_dropout=1.0)
    assert recipe_problems(Recipe(model=cfg)) == [p for p in spec.problems("model.")]
