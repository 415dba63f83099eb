"""The model's configuration: one definition of the architecture, and the spec built from it.

`Architecture` holds every architecture field once (type, default, help text) with its checks
(`problems`). The recipe's `model` section (tfcli.recipe.schema.ModelConfig) is `Architecture`
plus what only training needs (`init_encoder_from`); `ModelSpec` is `Architecture` plus what
the data decides (kind, vocabulary sizes, pad id). A ModelSpec is stored as flat JSON in every
checkpoint (`to_dict`) and read back through the recipe's typed parser (`from_dict`), so
`inspect` reads a checkpoint's model without importing torch; only `build.py` turns it into
modules, and layers receive what they need.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass
from typing import Any

from tfcli.errors import CheckpointError, RecipeError
from tfcli.recipe.parse import build, knob, type_name

# --- closed choices ----------------------------------------------------------------------------


class ModelKind(str, enum.Enum):
    SEQ2SEQ = "seq2seq"  # EncoderDecoder (tfcli train)
    MLM = "mlm"  # MaskedLM, encoder only (tfcli pretrain-mlm)


class Activation(str, enum.Enum):
    RELU = "relu"
    GELU = "gelu"


class NormPosition(str, enum.Enum):
    POST = "post"  # as in the paper: x = norm(x + sublayer(x))
    PRE = "pre"  # x = x + sublayer(norm(x)), with a final norm


class Positions(str, enum.Enum):
    SINUSOIDAL = "sinusoidal"
    LEARNED = "learned"
    ROTARY = "rotary"
    RELATIVE = "relative"  # Shaw et al. 2018: learned embeddings of clipped distances (relative.py)
    ALIBI = "alibi"  # Press et al. 2022: a fixed linear distance penalty per head (alibi.py)


class AttentionKind(str, enum.Enum):
    FULL = "full"  # every query sees every allowed key: O(T^2) scores
    LINFORMER = "linformer"  # Wang et al. 2020: keys/values projected to linformer_k (linformer.py)


class AttentionScore(str, enum.Enum):
    DOT = "dot"  # q.k / sqrt(d_head), the paper's scaled dot product
    ADDITIVE = "additive"  # Bahdanau: v^T tanh(q + k) per head (additive.py)


class DecoderKind(str, enum.Enum):
    AUTOREGRESSIVE = "autoregressive"  # causal decoder, one token at a time (the paper)
    NON_AUTOREGRESSIVE = (
        "non_autoregressive"  # every position at once + a length predictor (nat.py)
    )


class Init(str, enum.Enum):
    XAVIER = "xavier"  # xavier_uniform linears, N(0, d_model^-0.5) embeddings (fairseq)
    NORMAL = "normal"  # N(0, 0.02) for every linear and embedding weight (BERT, BART, Marian)


# --- the architecture --------------------------------------------------------------------------


@dataclass
class Architecture:
    """The architecture of the one Transformer core (seq2seq and MLM alike): every field once,
    with its recipe help text, shared by the recipe's `model` section and ModelSpec."""

    d_model: int = knob(512, "model width")
    n_heads: int = knob(8, "attention heads; must divide d_model")
    d_ff: int = knob(2048, "feed-forward inner width")
    encoder_layers: int = knob(6, "encoder layers")
    decoder_layers: int = knob(6, "decoder layers (ignored by pretrain-mlm)")
    dropout: float = knob(0.1, "dropout on embeddings, sublayer outputs and feed-forward")
    attention_dropout: float = knob(0.0, "dropout on attention weights")
    activation: Activation = knob(Activation.RELU, "relu | gelu")
    norm: NormPosition = knob(NormPosition.POST, "post (paper) | pre")
    positions: Positions = knob(
        Positions.SINUSOIDAL,
        "sinusoidal (paper) | learned | rotary | relative (Shaw et al. 2018) | "
        "alibi (Press et al. 2022, extrapolates past max_positions)",
    )
    max_positions: int = knob(1024, "longest sequence the positions support")
    share_embeddings: bool = knob(True, "tie source, target and output embeddings (joint vocab)")
    window: int = knob(0, "local self-attention window (tokens each side); 0 = full attention")
    init: Init = knob(Init.XAVIER, "initial weights: xavier (fairseq) | normal = N(0, 0.02) (HF)")
    max_relative_position: int = knob(
        16,
        "positions: relative: distances are clipped to +-this (Shaw et al.: 16; k >= 2 is close)",
    )
    relative_values: bool = knob(
        False, "positions: relative: also add relative embeddings to the values (Shaw's a^V)"
    )
    attention: AttentionKind = knob(
        AttentionKind.FULL,
        "full | linformer (Wang et al. 2020: encoder self-attention over linformer_k projected "
        "keys; the decoder stays full)",
    )
    linformer_k: int = knob(256, "attention: linformer: projected key/value length")
    attention_score: AttentionScore = knob(
        AttentionScore.DOT,
        "dot (scaled dot product) | additive (Bahdanau: v^T tanh(q + k); d_head x the memory)",
    )

    decoder: DecoderKind = knob(
        DecoderKind.AUTOREGRESSIVE,
        "autoregressive (the paper) | non_autoregressive (Mask-Predict, Ghazvininejad et al. "
        "2019: no causal mask, a length predictor, trained as a conditional masked LM)",
    )

    def __post_init__(self) -> None:
        # Code may pass choices as their strings (ModelSpec(positions="rotary")); hold members.
        # A string no member has stays as it is, for `problems` to report.
        for name, choice in _choices(type(self)).items():
            value = getattr(self, name)
            if not isinstance(value, choice) and value in {m.value for m in choice}:
                setattr(self, name, choice(value))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def problems(self, prefix: str = "") -> list[str]:
        """Every inconsistency, one line each naming the field as `prefix + name` (the recipe
        passes "model."); empty when valid."""
        p = []
        for name, choice in _choices(type(self)).items():
            value = getattr(self, name)
            if not isinstance(value, choice):
                p.append(f"{prefix}{name}: expected {type_name(choice)}, got {value!r}")
        choices_valid = not p
        positive = ("d_model", "n_heads", "d_ff", "encoder_layers", "max_positions")
        p += [
            f"{prefix}{k}: must be > 0, got {getattr(self, k)}"
            for k in positive
            if getattr(self, k) <= 0
        ]
        if self.window < 0:
            p.append(f"{prefix}window: must be >= 0, got {self.window}")
        for k in ("max_relative_position", "linformer_k"):
            if getattr(self, k) <= 0:
                p.append(f"{prefix}{k}: must be > 0, got {getattr(self, k)}")
        if choices_valid:  # the variant rules read the choices' values
            p += self._variant_problems(prefix)
        if self.n_heads > 0 and self.d_model % self.n_heads:
            p.append(
                f"{prefix}d_model ({self.d_model}) must be divisible by "
                f"{prefix}n_heads ({self.n_heads})"
            )
        elif self.positions == Positions.ROTARY and self.n_heads > 0 and self.head_dim % 2:
            p.append(
                f"{prefix}positions: rotary needs an even head size (d_model / n_heads), "
                f"got {self.head_dim}"
            )
        for k in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, k) < 1.0:
                p.append(f"{prefix}{k}: must be in [0, 1), got {getattr(self, k)}")
        return p

    def _variant_problems(self, prefix: str) -> list[str]:
        """Combinations of the attention variants that cannot work, one line each."""
        p = []
        linformer = self.attention == AttentionKind.LINFORMER
        pairwise = self.positions in (Positions.RELATIVE, Positions.ALIBI)
        if self.relative_values and self.positions != Positions.RELATIVE:
            p.append(f"{prefix}relative_values: needs {prefix}positions: relative")
        if linformer and self.window > 0:
            p.append(
                f"{prefix}attention: linformer mixes every key position into linformer_k slots, "
                f"so it cannot keep a local {prefix}window; set window: 0 or attention: full"
            )
        if linformer and pairwise:
            p.append(
                f"{prefix}attention: linformer has no key positions left for "
                f"{prefix}positions: {self.positions.value}; use sinusoidal, learned or rotary"
            )
        if linformer and self.attention_score == AttentionScore.ADDITIVE:
            p.append(
                f"{prefix}attention: linformer supports attention_score: dot only, got additive"
            )
        if linformer and self.linformer_k > self.max_positions > 0:
            p.append(
                f"{prefix}linformer_k ({self.linformer_k}) must be <= {prefix}max_positions "
                f"({self.max_positions}): the projection shortens the sequence"
            )
        if self.attention_score == AttentionScore.ADDITIVE and self.positions not in (
            Positions.SINUSOIDAL,
            Positions.LEARNED,
        ):
            p.append(
                f"{prefix}attention_score: additive takes no {self.positions.value} positions "
                "(they are defined on the dot product); use sinusoidal or learned"
            )
        return p


def _choices(cls: type) -> dict[str, type[enum.Enum]]:
    """{field name: its enum} for the closed-choice fields of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if isinstance(hints[f.name], type) and issubclass(hints[f.name], enum.Enum)
    }


# --- the spec ----------------------------------------------------------------------------------


@dataclass
class _SpecHead:
    """ModelSpec's leading fields. A base listed after Architecture: dataclasses order fields
    from the last base to the first, so these come first and `ModelSpec("seq2seq", 100, 100,
    d_model=64)` reads as before the architecture had its own class."""

    kind: ModelKind
    src_vocab_size: int
    tgt_vocab_size: int  # == src_vocab_size for MLM models


@dataclass
class ModelSpec(Architecture, _SpecHead):
    """Everything `build_model` needs: the architecture plus what the data decides."""

    pad_id: int = 0

    def problems(self, prefix: str = "") -> list[str]:
        """The architecture's problems plus those of the vocabulary and the kind of model."""
        p = super().problems(prefix)
        p += [
            f"{prefix}{k}: must be > 0, got {getattr(self, k)}"
            for k in ("src_vocab_size", "tgt_vocab_size")
            if getattr(self, k) <= 0
        ]
        seq2seq = self.kind == ModelKind.SEQ2SEQ
        if seq2seq and self.decoder_layers <= 0:
            p.append(
                f"{prefix}decoder_layers: a seq2seq model needs > 0, got {self.decoder_layers}"
            )
        if seq2seq and self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            p.append(
                f"{prefix}share_embeddings: source and target vocabularies differ "
                f"({self.src_vocab_size} vs {self.tgt_vocab_size}); use a joint tokenizer"
            )
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            p.append(f"{prefix}pad_id: {self.pad_id} is outside the vocabulary")
        return p

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready plain data (choices as their strings): checkpoint meta["model"]."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Any) -> ModelSpec:
        """Inverse of `to_dict`, through the recipe's typed parser; a CheckpointError lists every
        unknown, missing or invalid field. Fields added later have defaults, so older
        checkpoints still load."""
        if not isinstance(d, dict):
            raise CheckpointError(f"model spec: expected a JSON object, got {type(d).__name__}")
        problems: list[str] = []
        spec = build(cls, d, "", problems)
        if not problems:
            problems = spec.problems()
        if problems:
            raise CheckpointError(
                f"model spec in checkpoint is invalid: {'; '.join(problems)} "
                "(written by an incompatible tfcli version, or edited by hand?)"
            )
        return spec


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def spec_from_recipe(
    cfg: Architecture, kind: str, src_vocab_size: int, tgt_vocab_size: int | None = None
) -> ModelSpec:
    """ModelSpec from a recipe's `model` section: its architecture fields, as they are.

    For kind="mlm" the target vocabulary is the source one and there is no decoder.
    A RecipeError names each problem as `model.<field>`.
    """
    mlm = kind == ModelKind.MLM
    arch = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Architecture)}
    if mlm:
        arch["decoder_layers"] = 0
        arch["decoder"] = DecoderKind.AUTOREGRESSIVE  # no decoder at all: keep the default
    spec = ModelSpec(
        kind=kind,
        src_vocab_size=src_vocab_size,
        tgt_vocab_size=src_vocab_size if mlm or tgt_vocab_size is None else tgt_vocab_size,
        **arch,
    )
    problems = spec.problems("model.")
    if problems:
        raise RecipeError(problems, "model")
    return spec
