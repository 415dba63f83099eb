"""The model's configuration: one Architecture shared by the recipe and ModelSpec, JSON round
trips (old checkpoints included), validation, specs built from recipes."""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys

import pytest

from tfcli.errors import CheckpointError, RecipeError
from tfcli.model.config import Architecture, ModelKind, ModelSpec, Positions, spec_from_recipe
from tfcli.recipe import loader as recipe
from tfcli.recipe.schema import ModelConfig

# A seq2seq spec exactly as checkpoints written before Architecture existed store it: these
# keys, in this order, and no others.
OLD_FORMAT = {
    "kind": "seq2seq",
    "src_vocab_size": 120,
    "tgt_vocab_size": 120,
    "d_model": 64,
    "n_heads": 4,
    "d_ff": 128,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "dropout": 0.1,
    "attention_dropout": 0.0,
    "activation": "gelu",
    "norm": "pre",
    "positions": "rotary",
    "max_positions": 256,
    "share_embeddings": True,
    "window": 0,
    "pad_id": 0,
    "init": "normal",
}
# What issue 12 added (the attention variants), at their defaults: old checkpoints lack them.
ADDED_KEYS = {
    "max_relative_position": 16,
    "relative_values": False,
    "attention": "full",
    "linformer_k": 256,
    "attention_score": "dot",
    "decoder": "autoregressive",
}


def _names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _other_value(value: object) -> object:
    """A valid value of the same type that differs from `value` (a field's default)."""
    if isinstance(value, enum.Enum):
        return next(m for m in reversed(type(value)) if m is not value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 if value else 2
    return 0.25 if value != 0.25 else 0.5


def test_round_trip_through_json() -> None:
    spec = ModelSpec("seq2seq", 100, 100, d_model=64, positions="rotary", window=3, norm="pre")
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert spec.positions is Positions.ROTARY, "strings given in code become the enum members"


def test_old_format_loads_and_is_written_back_unchanged() -> None:
    spec = ModelSpec.from_dict(dict(OLD_FORMAT))
    assert (spec.kind, spec.positions, spec.d_model) == (ModelKind.SEQ2SEQ, "rotary", 64)
    assert spec.to_dict() == OLD_FORMAT | ADDED_KEYS, "the same flat keys, new ones at defaults"
    assert _names(ModelSpec) == set(OLD_FORMAT) | set(ADDED_KEYS)
    assert build_model_free_defaults(spec)


def build_model_free_defaults(spec: ModelSpec) -> bool:
    """An old spec builds the paper's attention: no variant switched on by the new keys."""
    return (spec.attention, spec.attention_score, spec.relative_values) == ("full", "dot", False)


def test_from_dict_reports_every_problem() -> None:
    d = ModelSpec("mlm", 50, 50, decoder_layers=0).to_dict()
    d.update(colour="blue", n_heads="8", positions="t5")
    del d["kind"]
    with pytest.raises(CheckpointError) as e:
        ModelSpec.from_dict(d)
    msg = str(e.value)
    assert msg.startswith("model spec in checkpoint is invalid: ")
    assert "unknown key 'colour'" in msg and "missing key 'kind'" in msg
    assert "n_heads: expected an integer, got '8'" in msg
    assert (
        "positions: expected one of 'sinusoidal', 'learned', 'rotary', 'relative', 'alibi', "
        "got 't5'" in msg
    )


def test_from_dict_checks_values() -> None:
    d = ModelSpec("seq2seq", 50, 50).to_dict()
    d.update(d_model=30)
    with pytest.raises(CheckpointError, match=r"d_model \(30\) must be divisible by n_heads"):
        ModelSpec.from_dict(d)
    with pytest.raises(CheckpointError, match="expected a JSON object"):
        ModelSpec.from_dict(["seq2seq"])


def test_problems_of_a_spec_built_in_code() -> None:
    spec = ModelSpec("seq2seq", 40, 30, activation="swish", decoder_layers=0, pad_id=40)
    problems = spec.problems()
    assert "activation: expected one of 'relu', 'gelu', got 'swish'" in problems
    assert "decoder_layers: a seq2seq model needs > 0, got 0" in problems
    assert any(
        p.startswith("share_embeddings: source and target vocabularies differ") for p in problems
    )
    assert "pad_id: 40 is outside the vocabulary" in problems
    assert ModelSpec("seq2seq", 40, 40).problems() == []


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
    assert (mlm.kind, mlm.tgt_vocab_size, mlm.decoder_layers) == (ModelKind.MLM, 800, 0)
    json.dumps(mlm.to_dict())


def test_spec_from_recipe_rejects_shared_embeddings_over_two_vocabularies() -> None:
    r = recipe.load(None, [])
    with pytest.raises(RecipeError, match="model.share_embeddings: source and target"):
        spec_from_recipe(r.model, "seq2seq", 1000, 900)


def test_one_architecture_for_the_recipe_and_the_spec() -> None:
    """The recipe's model section and ModelSpec are Architecture plus their own extras."""
    arch = _names(Architecture)
    assert _names(ModelConfig) == arch | {"init_encoder_from"}
    assert _names(ModelSpec) == arch | {"kind", "src_vocab_size", "tgt_vocab_size", "pad_id"}
    assert spec_from_recipe(ModelConfig(), "seq2seq", 100, 100) == ModelSpec("seq2seq", 100, 100)


# The attention variants exclude one another, so no one recipe changes every field: each set
# changes some (window too: Linformer refuses one), on top of every other field changed.
VARIANTS = [
    {"positions": "relative", "relative_values": True, "max_relative_position": 8, "window": 2},
    {"attention": "linformer", "linformer_k": 64, "positions": "rotary"},
    {"attention_score": "additive", "positions": "learned", "window": 3},
]
EXCLUSIVE = {k for v in VARIANTS for k in v}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_architecture_field_of_the_recipe_reaches_the_spec(variant: dict) -> None:
    default = Architecture()
    changed = {
        f.name: recipe.to_dict(_other_value(getattr(default, f.name)))
        for f in dataclasses.fields(Architecture)
        if f.name not in EXCLUSIVE
    } | variant
    r = recipe.load(None, values={f"model.{k}": v for k, v in changed.items()})
    spec = spec_from_recipe(r.model, "seq2seq", 100, 100)
    for f in dataclasses.fields(Architecture):
        if f.name in changed:
            assert getattr(spec, f.name) != getattr(default, f.name), f.name
        assert getattr(spec, f.name) == getattr(r.model, f.name), f.name
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_config_imports_without_torch() -> None:
    code = "import sys, tfcli.model.config, tfcli.recipe.loader; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "fields,problem",
    [
        (dict(attention="linformer", window=4), "model.attention: linformer mixes every key"),
        (dict(attention="linformer", positions="relative"), "has no key positions left for"),
        (dict(attention="linformer", positions="alibi"), "model.positions: alibi; use"),
        (dict(attention="linformer", attention_score="additive"), "supports attention_score: dot"),
        (dict(attention="linformer", linformer_k=2048), "model.linformer_k (2048) must be <="),
        (dict(attention_score="additive", positions="rotary"), "additive takes no rotary"),
        (dict(attention_score="additive", positions="relative"), "additive takes no relative"),
        (dict(relative_values=True), "model.relative_values: needs model.positions: relative"),
        (dict(max_relative_position=0), "model.max_relative_position: must be > 0, got 0"),
        (dict(linformer_k=0), "model.linformer_k: must be > 0, got 0"),
    ],
)
def test_combinations_that_cannot_work_are_refused_in_one_line(fields, problem) -> None:
    problems = Architecture(**fields).problems("model.")
    assert len(problems) == 1 and problem in problems[0], problems
    with pytest.raises(RecipeError) as e:  # what `tfcli validate` and every command report
        recipe.load(None, [f"model.{k}={v}" for k, v in fields.items()])
    assert problem in str(e.value)


def test_variants_that_work_together_pass() -> None:
    for fields in (
        dict(positions="relative", relative_values=True, window=4),
        dict(positions="alibi", window=4),
        dict(attention="linformer", linformer_k=64, positions="rotary"),
        dict(attention_score="additive", positions="learned", window=2),
    ):
        assert Architecture(**fields).problems() == [], fields
