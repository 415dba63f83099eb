"""Which model settings export where, and the one-line refusal for every setting that does not.

An export is exact or it does not happen: each target below computes the same function as
tfcli's model (up to float rounding), with no approximation. The table the README shows is
`SUPPORT`; `hf_target` / `check_ctranslate2` apply it to a checkpoint's ModelSpec.

* seq2seq, `norm: post`, sinusoidal positions -> MarianMTModel (the paper's model; Marian
  recomputes its sinusoidal table on load, so only the fixed table can be carried over).
* seq2seq, `norm: pre`, sinusoidal or learned positions -> PegasusForConditionalGeneration
  (Pegasus is pre-norm with a final LayerNorm per stack, and keeps a position table on disk).
* MLM, `norm: pre`, `activation: gelu`, sinusoidal or learned positions -> MegatronBertForMaskedLM
  (pre-norm with a final LayerNorm and no embedding LayerNorm; its prediction head uses the
  layers' activation, and tfcli's head is GELU); rotary positions -> EsmForMaskedLM (pre-norm,
  GELU, rotate-half rotary, no embedding LayerNorm or token dropout). BERT and RoBERTa normalise
  the embeddings, which a post-norm tfcli encoder does not, so a post-norm MLM has no exact HF
  equivalent.
* CTranslate2: seq2seq with either norm, sinusoidal or learned positions, relu or gelu, joint or
  separate vocabularies (its TransformerSpec holds each of these exactly).
"""

from __future__ import annotations

import enum

from tfcli.errors import CheckpointError
from tfcli.model.config import (
    Activation,
    AttentionKind,
    AttentionScore,
    ModelKind,
    ModelSpec,
    NormPosition,
    Positions,
)


class HFTarget(str, enum.Enum):
    MARIAN = "MarianMTModel"
    PEGASUS = "PegasusForConditionalGeneration"
    MEGATRON_BERT = "MegatronBertForMaskedLM"
    ESM = "EsmForMaskedLM"


SUPPORT = [  # (settings, --to hf, --to ctranslate2): the README table
    ("seq2seq, norm: post, positions: sinusoidal", "MarianMTModel", "yes"),
    ("seq2seq, norm: post, positions: learned", "refused (Marian recomputes positions)", "yes"),
    ("seq2seq, norm: pre, positions: sinusoidal or learned", "PegasusForConditionalGeneration", "yes"),
    ("seq2seq, share_embeddings: false (two vocabularies)", "refused (one HF tokenizer)", "yes"),
    ("mlm, norm: pre, activation: gelu, positions: sinusoidal or learned", "MegatronBertForMaskedLM", "refused (no MLM head)"),
    ("mlm, norm: pre, activation: gelu, positions: rotary (demo-mlm)", "EsmForMaskedLM", "refused (no MLM head)"),
    ("mlm, norm: post (BERT-style)", "refused (BERT normalises embeddings)", "refused"),
    ("seq2seq positions: rotary; any model: relative / alibi", "refused", "refused"),
    ("attention: linformer, attention_score: additive, window > 0", "refused", "refused"),
    ("seq2seq decoder: non_autoregressive (Mask-Predict)", "refused", "refused"),
]  # fmt: skip


def _refuse(target: str, setting: str, why: str) -> CheckpointError:
    return CheckpointError(
        f"cannot export to {target}: {setting} has no exact equivalent there ({why}); "
        "tfcli exports only what computes the same outputs"
    )


def _common(spec: ModelSpec, target: str, rotary_ok: bool = False) -> None:
    """The variants neither target has: position schemes inside attention, other scores."""
    additive = (Positions.SINUSOIDAL, Positions.LEARNED)
    if spec.positions not in (*additive, Positions.ROTARY) or (
        spec.positions == Positions.ROTARY and not rotary_ok
    ):
        raise _refuse(
            target, f"model.positions: {spec.positions.value}", "it adds sinusoidal or learned "
            "position vectors to the embeddings only",
        )  # fmt: skip
    if spec.attention == AttentionKind.LINFORMER:
        raise _refuse(target, "model.attention: linformer", "its attention is full")
    if spec.attention_score == AttentionScore.ADDITIVE:
        raise _refuse(target, "model.attention_score: additive", "it scores by dot product")
    if spec.window > 0:
        raise _refuse(target, f"model.window: {spec.window}", "its self-attention is full")
    decoder = getattr(getattr(spec, "decoder", None), "value", "autoregressive")
    if spec.kind == ModelKind.SEQ2SEQ and decoder != "autoregressive":
        raise _refuse(
            target, f"model.decoder: {decoder}", "its decoder is causal and emits one token at a "
            "time; a Mask-Predict decoder sees every position and predicts the length",
        )  # fmt: skip


def hf_target(spec: ModelSpec) -> HFTarget:
    """The HF architecture that computes exactly what `spec` does; CheckpointError otherwise."""
    mlm = spec.kind == ModelKind.MLM
    rotary = spec.positions == Positions.ROTARY
    _common(spec, "HF transformers", rotary_ok=mlm)  # ESM has rotary; no HF seq2seq does
    if mlm:
        if spec.norm != NormPosition.PRE:
            raise _refuse(
                "HF transformers", "model.norm: post for a masked LM",
                "BERT and RoBERTa apply a LayerNorm to the embeddings; pretrain with "
                "model.norm: pre to export as MegatronBertForMaskedLM",
            )  # fmt: skip
        if spec.activation != Activation.GELU:
            raise _refuse(
                "HF transformers", "model.activation: relu for a masked LM",
                "Megatron-BERT's prediction head uses the layers' activation and tfcli's head "
                "is GELU; pretrain with model.activation: gelu",
            )  # fmt: skip
        return HFTarget.ESM if rotary else HFTarget.MEGATRON_BERT
    if not spec.share_embeddings:
        raise _refuse(
            "HF transformers", "model.share_embeddings: false",
            "an HF checkpoint carries one tokenizer; train with a joint tokenizer, or export "
            "--to ctranslate2, which keeps both vocabularies",
        )  # fmt: skip
    if spec.d_model % 2:
        raise _refuse("HF transformers", f"model.d_model: {spec.d_model} (odd)",
                      "its sinusoidal table needs an even width")  # fmt: skip
    if spec.norm == NormPosition.PRE:
        return HFTarget.PEGASUS
    if spec.positions == Positions.LEARNED:
        raise _refuse(
            "HF transformers", "model.positions: learned with model.norm: post",
            "MarianMTModel recomputes a sinusoidal table on load and BART adds an embedding "
            "LayerNorm; export --to ctranslate2, or train with sinusoidal positions",
        )  # fmt: skip
    return HFTarget.MARIAN


def check_ctranslate2(spec: ModelSpec) -> None:
    """CheckpointError unless CTranslate2's TransformerSpec holds `spec` exactly."""
    if spec.kind == ModelKind.MLM:
        raise CheckpointError(
            "cannot export to CTranslate2: a masked-LM checkpoint has no CTranslate2 "
            "equivalent (it runs translation and language models); export --to hf instead"
        )
    _common(spec, "CTranslate2")
