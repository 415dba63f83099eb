"""ModelSpec: plain data, JSON round trip, validation, built from recipes."""

from __future__ import annotations

import json

import pytest

from tfcli.errors import CheckpointError, RecipeError
from tfcli.model.config import ModelSpec, spec_from_recipe
from tfcli.recipe import loader as recipe
from tfcli.recipe.schema import ModelConfig


def test_round_trip_through_json() -> None:
    spec = ModelSpec("seq2seq", 100, 100, d_model=64, positions="rotary", window=3, norm="pre")
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec


def test_from_dict_reports_every_problem() -> None:
    d = ModelSpec("mlm", 50, 50, decoder_layers=0).to_dict()
    d.update(colour="blue", n_heads="8", positions="alibi")
    del d["kind"]
    with pytest.raises(CheckpointError) as e:
        ModelSpec.from_dict(d)
    msg = str(e.value)
    assert "unknown field 'colour'" in msg and "missing field 'kind'" in msg
    assert "n_heads: expected int" in msg


def test_from_dict_checks_values() -> None:
    d = ModelSpec("seq2seq", 50, 50).to_dict()
    d.update(d_model=30, positions="alibi")
    with pytest.raises(CheckpointError, match="divisible by n_heads.*|positions"):
        ModelSpec.from_dict(d)


def test_spec_from_recipe_seq2seq_and_mlm() -> None:
    r = recipe.load(None, ["model.d_model=64", "model.n_heads=4", "model.positions=rotary"])
    s2s = spec_from_recipe(r.model, "seq2seq", 1000, 1000)
    assert (s2s.d_model, s2s.positions, s2s.decoder_layers) == (
        64,
        "rotary",
        r.model.decoder_layers,
    )
    assert isinstance(s2s.positions, str) and s2s.problems() == []
    mlm = spec_from_recipe(r.model, "mlm", 800, None)
    assert (mlm.tgt_vocab_size, mlm.decoder_layers) == (800, 0)
    json.dumps(mlm.to_dict())


def test_spec_from_recipe_rejects_shared_embeddings_over_two_vocabularies() -> None:
    r = recipe.load(None, [])
    with pytest.raises(RecipeError, match="share_embeddings"):
        spec_from_recipe(r.model, "seq2seq", 1000, 900)


def test_every_model_knob_of_the_recipe_reaches_the_spec() -> None:
    """A field added to ModelConfig must be carried by ModelSpec (or be listed here)."""
    import dataclasses

    not_architecture = {"init_encoder_from"}  # a training-time action, not part of the model
    recipe_fields = {f.name for f in dataclasses.fields(ModelConfig)} - not_architecture
    spec_fields = {f.name for f in dataclasses.fields(ModelSpec)}
    assert recipe_fields <= spec_fields
    defaults = spec_from_recipe(ModelConfig(), "seq2seq", 100, 100)
    assert defaults == ModelSpec("seq2seq", 100, 100)  # same defaults in both places
