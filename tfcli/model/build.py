"""build_model: the only place that turns a ModelSpec into modules, ties weights and initialises.

Initialisation (`ModelSpec.init`):
* "xavier" (default): the reference Transformer implementations (tensor2tensor, fairseq, the
  Annotated Transformer): linear weights xavier_uniform, biases zero; fused q/k/v (and k/v)
  projections one d_model x d_model block at a time, so they start exactly like separate
  projections (xavier over the fused shape would shrink them by sqrt(2)); embeddings
  N(0, d_model**-0.5), padding row zero, so that scaled by sqrt(d_model) token vectors have
  unit-variance features, the scale of the sinusoidal table, and tied logits start at unit scale.
* "normal": every linear and embedding weight ~ N(0, 0.02), biases zero, as BERT, BART and
  Marian (HF transformers) start; tied logits start small (std ~0.3), a nearly flat softmax.
  Neither wins everywhere, measured at the same batches and learning rate: on real
  English->French messages (benchmarks/bench_quality.py) "normal" reached a lower loss after
  150 updates (6.55 vs 6.89); on the bundled demo tasks "xavier" learns faster (quickstart
  test BLEU and masked-token accuracy after the same short runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from tfcli.errors import RecipeError
from tfcli.model.additive import AdditiveScore
from tfcli.model.attention import MultiHeadedAttention
from tfcli.model.config import (
    AttentionKind,
    AttentionScore,
    DecoderKind,
    ModelKind,
    ModelSpec,
    NormPosition,
    Positions,
)
from tfcli.model.embeddings import Embeddings
from tfcli.model.length import LengthPredictor
from tfcli.model.linformer import LinformerAttention
from tfcli.model.mlm import MaskedLM, MLMHead
from tfcli.model.nat import NonAutoregressive
from tfcli.model.positions import LearnedPositions
from tfcli.model.relative import RelativePositionAttention
from tfcli.model.seq2seq import EncoderDecoder, Generator
from tfcli.model.stack import TransformerStack

Core = Callable[[], nn.Module] | None  # makes one layer's attention core; None = dot product


class Role(NamedTuple):
    """What a TransformerStack is for: the named roles of the one stack class."""

    causal: bool
    cross_attend: bool


ENCODER = Role(causal=False, cross_attend=False)
DECODER = Role(causal=True, cross_attend=True)  # autoregressive: position i sees <= i
PARALLEL_DECODER = Role(causal=False, cross_attend=True)  # non-autoregressive (nat.py)


def _self_core(spec: ModelSpec, role: Role) -> Core:
    """The closed table of self-attention cores. Architecture.problems has refused every
    combination two of these would need (e.g. linformer + relative), so at most one applies.
    Linformer mixes all positions, so decoders keep the scaled dot product."""
    if spec.attention_score == AttentionScore.ADDITIVE:
        return lambda: AdditiveScore(spec.n_heads, spec.head_dim)
    if spec.positions == Positions.RELATIVE:
        k, values = spec.max_relative_position, spec.relative_values
        return lambda: RelativePositionAttention(spec.head_dim, k, values)
    if spec.attention == AttentionKind.LINFORMER and role is ENCODER:
        return lambda: LinformerAttention(spec.max_positions, spec.linformer_k)
    return None


def _cross_core(spec: ModelSpec) -> Core:
    """Cross-attention has no positions between source and target: only the score varies."""
    if spec.attention_score == AttentionScore.ADDITIVE:
        return lambda: AdditiveScore(spec.n_heads, spec.head_dim)
    return None


def _stack(spec: ModelSpec, n_layers: int, role: Role) -> TransformerStack:
    return TransformerStack(
        n_layers,
        spec.d_model,
        spec.n_heads,
        spec.d_ff,
        dropout=spec.dropout,
        attention_dropout=spec.attention_dropout,
        activation=spec.activation,
        pre_norm=spec.norm == NormPosition.PRE,
        causal=role.causal,
        cross_attend=role.cross_attend,
        window=spec.window,
        rotary_positions=spec.max_positions if spec.positions == Positions.ROTARY else 0,
        alibi=spec.positions == Positions.ALIBI,
        self_core=_self_core(spec, role),
        cross_core=_cross_core(spec) if role.cross_attend else None,
    )


def _embeddings(spec: ModelSpec, vocab_size: int) -> Embeddings:
    return Embeddings(
        vocab_size, spec.d_model, spec.pad_id, spec.positions, spec.max_positions, spec.dropout
    )


NORMAL_STD = 0.02


@torch.no_grad()
def init_weights(model: nn.Module, d_model: int, scheme: str = "xavier") -> None:
    """Initialise every parameter as described in the module docstring (in place)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if scheme == "normal":
                nn.init.normal_(module.weight, 0.0, NORMAL_STD)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        if isinstance(module, LearnedPositions):
            nn.init.normal_(module.weight, 0.0, NORMAL_STD if scheme == "normal" else d_model**-0.5)
    if scheme == "xavier":
        # Second pass: modules() visits an attention block before its Linear children.
        for module in model.modules():
            if isinstance(module, MultiHeadedAttention):
                fused = module.kv_proj if module.cross else module.qkv_proj
                for block in fused.weight.split(d_model, dim=0):
                    nn.init.xavier_uniform_(block)
    # Embeddings last: tied output projections are nn.Linear modules sharing these weights.
    std = NORMAL_STD if scheme == "normal" else d_model**-0.5
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()


def build_model(spec: ModelSpec) -> EncoderDecoder | NonAutoregressive | MaskedLM:
    """A freshly initialised model for `spec` (seed torch beforehand for reproducibility).

    The spec is kept as `model.spec` so callers can store it beside the weights. A spec that
    fails `ModelSpec.problems` (one built by hand) raises RecipeError before any layer is made.
    """
    problems = spec.problems()
    if problems:
        raise RecipeError(problems, "model spec")
    src_embed = _embeddings(spec, spec.src_vocab_size)
    encoder = _stack(spec, spec.encoder_layers, ENCODER)
    model: EncoderDecoder | MaskedLM
    if spec.kind == ModelKind.MLM:
        head = MLMHead(spec.d_model, spec.src_vocab_size)
        model = MaskedLM(src_embed, encoder, head, pad_id=spec.pad_id)
        init_weights(model, spec.d_model, spec.init)
        head.proj.weight = src_embed.tokens.weight
    else:
        # Shared: one module, so learned positions (if any) are shared too, like the tokens.
        tgt_embed = src_embed if spec.share_embeddings else _embeddings(spec, spec.tgt_vocab_size)
        if spec.decoder == DecoderKind.NON_AUTOREGRESSIVE:
            decoder = _stack(spec, spec.decoder_layers, PARALLEL_DECODER)
            generator = Generator(spec.d_model, spec.tgt_vocab_size)
            length = LengthPredictor(spec.d_model, spec.max_positions)
            model = NonAutoregressive(
                src_embed, tgt_embed, encoder, decoder, generator, length, pad_id=spec.pad_id
            )
        else:
            decoder = _stack(spec, spec.decoder_layers, DECODER)
            generator = Generator(spec.d_model, spec.tgt_vocab_size)
            model = EncoderDecoder(
                src_embed, tgt_embed, encoder, decoder, generator, pad_id=spec.pad_id
            )
        init_weights(model, spec.d_model, spec.init)
        generator.proj.weight = tgt_embed.tokens.weight
    model.spec = spec
    return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per top-level part ("src_embed", "encoder", ...) plus "total".

    A shared tensor counts once, under the first part that holds it (so a tied generator or
    a shared tgt_embed shows 0).
    """
    seen: set[int] = set()
    counts: dict[str, int] = {}
    for name, child in model.named_children():
        n = 0
        for p in child.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        counts[name] = n
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts
