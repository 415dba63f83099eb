"""ModelSpec: the plain-data description of a model, stored as JSON in every checkpoint.

Only this module and `build.py` know hyperparameters; layers receive what they need. Enums are
plain strings here (not the recipe's enum classes) so `json.dumps(spec.to_dict())` just works and
`inspect` can read a checkpoint's model without importing torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tfcli.errors import CheckpointError, RecipeError

KINDS = ("seq2seq", "mlm")
ACTIVATIONS = ("relu", "gelu")
NORMS = ("post", "pre")
POSITIONS = ("sinusoidal", "learned", "rotary")
INITS = ("xavier", "normal")


@dataclass
class ModelSpec:
    """Everything `build_model` needs. `tgt_vocab_size == src_vocab_size` for MLM models."""

    kind: str  # "seq2seq" | "mlm"
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6  # 0 for MLM models
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation: str = "relu"  # "relu" | "gelu"
    norm: str = "post"  # "post" (paper) | "pre" (final LayerNorm on each stack)
    positions: str = "sinusoidal"  # "sinusoidal" | "learned" | "rotary"
    max_positions: int = 1024
    share_embeddings: bool = True  # one matrix for source, target and output (joint vocab)
    window: int = 0  # local self-attention window; 0 = full attention
    pad_id: int = 0
    init: str = "xavier"  # "xavier" (fairseq) | "normal" (N(0, 0.02)); used by build_model only

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def problems(self) -> list[str]:
        """Every inconsistency, as one-line messages naming the field (empty when valid)."""
        p = []
        choices = {
            "kind": KINDS,
            "activation": ACTIVATIONS,
            "norm": NORMS,
            "positions": POSITIONS,
            "init": INITS,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                p.append(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
        positive = ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff")
        positive += ("encoder_layers", "max_positions")
        p += [
            f"{k}: must be > 0, got {getattr(self, k)}" for k in positive if getattr(self, k) <= 0
        ]
        if self.kind == "seq2seq" and self.decoder_layers <= 0:
            p.append(f"decoder_layers: a seq2seq model needs > 0, got {self.decoder_layers}")
        if self.window < 0:
            p.append(f"window: must be >= 0, got {self.window}")
        if self.n_heads > 0 and self.d_model % self.n_heads:
            p.append(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        elif self.positions == "rotary" and self.n_heads > 0 and self.head_dim % 2:
            p.append(f"positions: rotary needs an even head size, got {self.head_dim}")
        for k in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, k) < 1.0:
                p.append(f"{k}: must be in [0, 1), got {getattr(self, k)}")
        if self.kind == "seq2seq" and self.share_embeddings:
            if self.src_vocab_size != self.tgt_vocab_size:
                p.append(
                    "share_embeddings: source and target vocabularies differ "
                    f"({self.src_vocab_size} vs {self.tgt_vocab_size}); use a joint tokenizer"
                )
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            p.append(f"pad_id: {self.pad_id} is outside the vocabulary")
        return p

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Inverse of `to_dict`; a CheckpointError lists unknown, missing or invalid fields."""
        if not isinstance(d, dict):
            raise CheckpointError(f"model spec: expected a JSON object, got {type(d).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in names.items() if f.default is dataclasses.MISSING]
        problems = [f"unknown field '{k}'" for k in d if k not in names]
        problems += [f"missing field '{k}'" for k in required if k not in d]
        kwargs = {}
        for k, v in d.items():
            if k not in names:
                continue
            expected = {"int": int, "float": (int, float), "str": str, "bool": bool}[names[k].type]
            if isinstance(v, bool) and names[k].type != "bool" or not isinstance(v, expected):
                problems.append(f"{k}: expected {names[k].type}, got {v!r}")
            kwargs[k] = float(v) if names[k].type == "float" and not isinstance(v, bool) else v
        if not problems:
            problems = cls(**kwargs).problems()
        if problems:
            raise CheckpointError(
                f"model spec in checkpoint is invalid: {'; '.join(problems)} "
                "(written by an incompatible tfcli version, or edited by hand?)"
            )
        return cls(**kwargs)


def spec_from_recipe(
    cfg: Any, kind: str, src_vocab_size: int, tgt_vocab_size: int | None = None
) -> ModelSpec:
    """ModelSpec from a recipe's `model` section (tfcli.recipe.ModelConfig).

    For kind="mlm" the target vocabulary is the source one and there is no decoder.
    """

    def value(x: Any) -> Any:
        return getattr(x, "value", x)  # recipe enums -> their strings

    mlm = kind == "mlm"
    spec = ModelSpec(
        kind=kind,
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=src_vocab_size if mlm or tgt_vocab_size is None else tgt_vocab_size,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_ff=cfg.d_ff,
        encoder_layers=cfg.encoder_layers,
        decoder_layers=0 if mlm else cfg.decoder_layers,
        dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout,
        activation=value(cfg.activation),
        norm=value(cfg.norm),
        positions=value(cfg.positions),
        max_positions=cfg.max_positions,
        share_embeddings=cfg.share_embeddings,
        window=cfg.window,
        init=value(cfg.init),
    )
    problems = spec.problems()
    if problems:
        raise RecipeError([f"model.{p}" for p in problems], "model")
    return spec
