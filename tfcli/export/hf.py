"""tfcli -> HF transformers: the exact weight mapping, and `export_hf` (a from_pretrained dir).

Seq2seq models become MarianMTModel (post-norm) or PegasusForConditionalGeneration (pre-norm):
both scale shared embeddings by sqrt(d_model), add a position table, and tie the output
projection, as tfcli does. Their sinusoidal table puts sin in the first half of the features and
cos in the second, where tfcli interleaves them (sin at 2i, cos at 2i+1, same frequencies), and
Marian recomputes its table on load. So the residual stream is carried over under the fixed
permutation `P = [0, 2, 4, ..., 1, 3, 5, ...]`: every weight reading the residual stream has its
input columns permuted, every weight writing it (and every LayerNorm) its rows, the embeddings
and the position table their features. LayerNorm, attention heads and the tied output are
invariant under it, so the function is unchanged and HF's own table is tfcli's, permuted.

Masked LMs become MegatronBertForMaskedLM: pre-norm, a final LayerNorm, no embedding LayerNorm,
learned positions from 0 (tfcli's table is written there), a GELU head; with rotary positions
EsmForMaskedLM (the same shape, rotary q/k as tfcli rotates them). Its embeddings are not
scaled, so the word embeddings hold tfcli's times sqrt(d_model) and the untied decoder the
originals. The one token-type row is zero.

`export_hf` reloads what it wrote with `from_pretrained` and compares logits with tfcli's before
the directory appears; a mismatch above `CHECK_TOLERANCE` is an error, never a silent export.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from tfcli.checkpoints import files as ckpt
from tfcli.errors import CheckpointError
from tfcli.export.hf_tokenizer import hf_tokenizer
from tfcli.export.meta import check_out_dir, export_meta, write_meta
from tfcli.export.support import HFTarget, hf_target
from tfcli.model.config import ModelSpec
from tfcli.textio import atomic_dir
from tfcli.tokenizer.staleness import file_sha256
from tfcli.tokenizer.vocab import BOS, EOS, MASK, PAD

CHECK_TOLERANCE = 1e-3  # max |logit difference| on the self-check batch (fp32 runs: ~1e-6)


def residual_permutation(d_model: int) -> Tensor:
    """(D,) feature order of HF's sinusoidal layout in terms of tfcli's: [0, 2, ..., 1, 3, ...]."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def position_table(model: torch.nn.Module) -> Tensor:
    """(max_positions, D) the vectors tfcli adds to the source embeddings."""
    positions = model.src_embed.positions
    table = getattr(positions, "table", None)
    return (table if table is not None else positions.weight).detach().clone()


# --- seq2seq -----------------------------------------------------------------------------------


class _Permuted:
    """A state dict viewed under the residual permutation p: `reads` (Linear weights whose input
    is the residual stream), `writes` (Linear weight + bias producing it), `norm` (LayerNorm)."""

    def __init__(self, state: dict[str, Tensor], p: Tensor) -> None:
        self.s, self.p = state, p

    def reads(self, name: str) -> Tensor:
        return self.s[name][:, self.p]

    def writes(self, name: str) -> Tensor:
        return self.s[name][self.p]

    def plain(self, name: str) -> Tensor:
        return self.s[name]


def _attention(
    src: _Permuted, a: str, b: str, fused: str, names: tuple[str, ...], out: dict
) -> None:
    """Split a fused projection (q/k/v or k/v) into HF's separate ones, then the output one."""
    weights = src.reads(a + fused + ".weight").chunk(len(names))
    biases = src.plain(a + fused + ".bias").chunk(len(names))
    for name, w, bias in zip(names, weights, biases, strict=True):
        out[f"{b}{name}.weight"], out[f"{b}{name}.bias"] = w, bias


def _seq2seq_layer(src: _Permuted, a: str, b: str, decoder: bool) -> dict[str, Tensor]:
    """tfcli layer `a` (e.g. "decoder.layers.0.") -> HF Marian/Pegasus layer `b`."""
    out: dict[str, Tensor] = {}
    _attention(
        src, a + "self_attn.", b + "self_attn.", "qkv_proj", ("q_proj", "k_proj", "v_proj"), out
    )
    reads = {"feed_forward.w_1": "fc1"}
    writes = {"self_attn.out_proj": "self_attn.out_proj", "feed_forward.w_2": "fc2"}
    norms = {"self_attn_norm": "self_attn_layer_norm", "feed_forward_norm": "final_layer_norm"}
    if decoder:
        _attention(
            src, a + "cross_attn.", b + "encoder_attn.", "kv_proj", ("k_proj", "v_proj"), out
        )
        reads["cross_attn.q_proj"] = "encoder_attn.q_proj"
        writes["cross_attn.out_proj"] = "encoder_attn.out_proj"
        norms["cross_attn_norm"] = "encoder_attn_layer_norm"
    for ours, theirs in reads.items():
        out[f"{b}{theirs}.weight"] = src.reads(f"{a}{ours}.weight")
        out[f"{b}{theirs}.bias"] = src.plain(f"{a}{ours}.bias")
    for ours, theirs in {**writes, **norms}.items():
        out[f"{b}{theirs}.weight"] = src.writes(f"{a}{ours}.weight")
        out[f"{b}{theirs}.bias"] = src.writes(f"{a}{ours}.bias")
    return out  # fmt: skip


def _seq2seq_config(spec: ModelSpec, target: HFTarget):
    from transformers import MarianConfig, PegasusConfig

    common = dict(
        vocab_size=spec.tgt_vocab_size, d_model=spec.d_model,
        encoder_layers=spec.encoder_layers, decoder_layers=spec.decoder_layers,
        encoder_attention_heads=spec.n_heads, decoder_attention_heads=spec.n_heads,
        encoder_ffn_dim=spec.d_ff, decoder_ffn_dim=spec.d_ff,
        activation_function=spec.activation.value, dropout=spec.dropout,
        attention_dropout=spec.attention_dropout, activation_dropout=0.0,
        max_position_embeddings=spec.max_positions, scale_embedding=True,
        pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS, decoder_start_token_id=BOS,
        forced_eos_token_id=EOS, tie_word_embeddings=True, is_encoder_decoder=True,
    )  # fmt: skip
    if target is HFTarget.MARIAN:
        return MarianConfig(
            decoder_vocab_size=spec.tgt_vocab_size, share_encoder_decoder_embeddings=True, **common
        )
    return PegasusConfig(**common)


def generation_config(spec: ModelSpec, decode: dict):
    """generation_config.json: the recipe's beam and length penalty, tfcli's stopping rule and
    bans; outputs up to the model's positions (HF has no per-sentence `a * src_len + b`)."""
    from transformers import GenerationConfig

    beam = int(decode.get("beam_size", 5)) if decode.get("mode", "beam") == "beam" else 1
    return GenerationConfig(
        **generate_kwargs(beam, float(decode.get("length_penalty", 1.0)), spec.max_positions - 2),
        bos_token_id=BOS,
    )


def to_hf_seq2seq(model: torch.nn.Module, target: HFTarget, decode: dict | None = None):
    """An HF MarianMTModel / PegasusForConditionalGeneration computing exactly `model` (eval)."""
    from transformers import MarianMTModel, PegasusForConditionalGeneration

    spec = model.spec
    p = residual_permutation(spec.d_model)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    src = _Permuted(state, p)
    embed = src.reads("src_embed.tokens.weight")  # (V, D): its features are the residual's
    table = position_table(model)[:, p]
    dst = {"model.shared.weight": embed, "lm_head.weight": embed}
    dst["final_logits_bias"] = torch.zeros(1, spec.tgt_vocab_size)
    for side, n in (("encoder", spec.encoder_layers), ("decoder", spec.decoder_layers)):
        dst[f"model.{side}.embed_tokens.weight"] = embed
        dst[f"model.{side}.embed_positions.weight"] = table
        for i in range(n):
            dst.update(
                _seq2seq_layer(
                    src, f"{side}.layers.{i}.", f"model.{side}.layers.{i}.", side == "decoder"
                )
            )
        if target is HFTarget.PEGASUS:
            dst[f"model.{side}.layer_norm.weight"] = src.writes(f"{side}.norm.weight")
            dst[f"model.{side}.layer_norm.bias"] = src.writes(f"{side}.norm.bias")
    cls = MarianMTModel if target is HFTarget.MARIAN else PegasusForConditionalGeneration
    hf = cls(_seq2seq_config(spec, target)).eval()
    hf.generation_config = generation_config(spec, decode or {})
    _load_exactly(hf, dst)
    return hf  # fmt: skip


# --- masked LM ---------------------------------------------------------------------------------


def to_hf_mlm(model: torch.nn.Module):
    """An HF MegatronBertForMaskedLM computing exactly `model` (eval)."""
    from transformers import MegatronBertConfig, MegatronBertForMaskedLM

    spec = model.spec
    s = {k: v.detach() for k, v in model.state_dict().items()}
    embed = s["src_embed.tokens.weight"]
    dst = {
        "bert.embeddings.word_embeddings.weight": embed * math.sqrt(spec.d_model),
        "bert.embeddings.position_embeddings.weight": position_table(model),
        "bert.embeddings.token_type_embeddings.weight": torch.zeros(1, spec.d_model),
        "bert.encoder.ln.weight": s["encoder.norm.weight"],
        "bert.encoder.ln.bias": s["encoder.norm.bias"],
        "cls.predictions.transform.dense.weight": s["head.dense.weight"],
        "cls.predictions.transform.dense.bias": s["head.dense.bias"],
        "cls.predictions.transform.LayerNorm.weight": s["head.norm.weight"],
        "cls.predictions.transform.LayerNorm.bias": s["head.norm.bias"],
        "cls.predictions.decoder.weight": embed,
        "cls.predictions.decoder.bias": s["head.proj.bias"],
        "cls.predictions.bias": s["head.proj.bias"],
    }
    for i in range(spec.encoder_layers):
        a, b = f"encoder.layers.{i}.", f"bert.encoder.layer.{i}."
        for part, w in zip(
            ("query", "key", "value"), s[a + "self_attn.qkv_proj.weight"].chunk(3), strict=True
        ):
            dst[f"{b}attention.self.{part}.weight"] = w
        for part, w in zip(
            ("query", "key", "value"), s[a + "self_attn.qkv_proj.bias"].chunk(3), strict=True
        ):
            dst[f"{b}attention.self.{part}.bias"] = w
        names = {
            "self_attn.out_proj": "attention.output.dense",
            "self_attn_norm": "attention.ln",
            "feed_forward_norm": "ln",
            "feed_forward.w_1": "intermediate.dense",
            "feed_forward.w_2": "output.dense",
        }
        for ours, theirs in names.items():
            dst[f"{b}{theirs}.weight"], dst[f"{b}{theirs}.bias"] = (
                s[f"{a}{ours}.weight"],
                s[f"{a}{ours}.bias"],
            )
    cfg = MegatronBertConfig(
        vocab_size=spec.src_vocab_size,
        hidden_size=spec.d_model,
        num_hidden_layers=spec.encoder_layers,
        num_attention_heads=spec.n_heads,
        intermediate_size=spec.d_ff,
        hidden_act="gelu",
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.attention_dropout,
        max_position_embeddings=spec.max_positions,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        tie_word_embeddings=False,
    )
    hf = MegatronBertForMaskedLM(cfg).eval()
    _load_exactly(hf, dst)
    return hf  # fmt: skip


def to_hf_esm(model: torch.nn.Module):
    """An HF EsmForMaskedLM computing exactly a rotary `model` (eval): ESM is pre-norm with a
    final LayerNorm, GELU, rotary q/k in the same rotate-half pairing and frequencies as tfcli,
    and no embedding LayerNorm (emb_layer_norm_before off, token dropout off)."""
    from transformers import EsmConfig, EsmForMaskedLM

    spec = model.spec
    s = {k: v.detach() for k, v in model.state_dict().items()}
    embed = s["src_embed.tokens.weight"]
    dst = {
        "esm.embeddings.word_embeddings.weight": embed * math.sqrt(spec.d_model),
        "esm.encoder.emb_layer_norm_after.weight": s["encoder.norm.weight"],
        "esm.encoder.emb_layer_norm_after.bias": s["encoder.norm.bias"],
        "lm_head.dense.weight": s["head.dense.weight"],
        "lm_head.dense.bias": s["head.dense.bias"],
        "lm_head.layer_norm.weight": s["head.norm.weight"],
        "lm_head.layer_norm.bias": s["head.norm.bias"],
        "lm_head.decoder.weight": embed,
        "lm_head.bias": s["head.proj.bias"],
    }
    for i in range(spec.encoder_layers):
        a, b = f"encoder.layers.{i}.", f"esm.encoder.layer.{i}."
        for part, w, bias in zip(
            ("query", "key", "value"),
            s[a + "self_attn.qkv_proj.weight"].chunk(3),
            s[a + "self_attn.qkv_proj.bias"].chunk(3),
            strict=True,
        ):
            dst[f"{b}attention.self.{part}.weight"], dst[f"{b}attention.self.{part}.bias"] = w, bias
        names = {
            "self_attn.out_proj": "attention.output.dense",
            "self_attn_norm": "attention.LayerNorm",
            "feed_forward_norm": "LayerNorm",
            "feed_forward.w_1": "intermediate.dense",
            "feed_forward.w_2": "output.dense",
        }
        for ours, theirs in names.items():
            dst[f"{b}{theirs}.weight"], dst[f"{b}{theirs}.bias"] = (
                s[f"{a}{ours}.weight"],
                s[f"{a}{ours}.bias"],
            )
    cfg = EsmConfig(
        vocab_size=spec.src_vocab_size,
        hidden_size=spec.d_model,
        num_hidden_layers=spec.encoder_layers,
        num_attention_heads=spec.n_heads,
        intermediate_size=spec.d_ff,
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.attention_dropout,
        max_position_embeddings=spec.max_positions,
        position_embedding_type="rotary",
        token_dropout=False,
        emb_layer_norm_before=False,
        layer_norm_eps=1e-5,
        pad_token_id=PAD,
        mask_token_id=MASK,
        tie_word_embeddings=False,
    )
    hf = EsmForMaskedLM(cfg).eval()
    with torch.no_grad():  # the contact head is ESM's protein add-on: unused, zeroed
        for p in hf.esm.contact_head.parameters():
            p.zero_()
        dst.update(
            {f"esm.contact_head.{k}": v for k, v in hf.esm.contact_head.state_dict().items()}
        )
    _load_exactly(hf, dst)
    return hf  # fmt: skip


def _load_exactly(hf: torch.nn.Module, dst: dict[str, Tensor]) -> None:
    """Load `dst` into `hf`; every parameter must be covered (positions set directly too: some
    HF versions keep them out of the state dict)."""
    missing, unexpected = hf.load_state_dict(
        {k: v.contiguous() for k, v in dst.items()}, strict=False
    )
    missing = [k for k in missing if "embed_positions" not in k and "inv_freq" not in k]
    if missing or unexpected:
        raise CheckpointError(
            f"HF weight mapping incomplete: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    with torch.no_grad():
        for name, module in hf.named_modules():
            if name.endswith("embed_positions"):
                side = name.split(".")[-2]
                module.weight.copy_(dst[f"model.{side}.embed_positions.weight"])  # fmt: skip


def to_hf(model: torch.nn.Module, decode: dict | None = None):
    """The exact HF equivalent of a tfcli model (CheckpointError naming the setting if none)."""
    target = hf_target(model.spec)
    if target is HFTarget.MEGATRON_BERT:
        return to_hf_mlm(model)
    if target is HFTarget.ESM:
        return to_hf_esm(model)
    return to_hf_seq2seq(model, target, decode)


# --- the export --------------------------------------------------------------------------------


def check_batch(spec: ModelSpec, seed: int = 0) -> Tensor:
    """(2, T) source ids for the self-check: random non-special ids, </s>, right padding."""
    g = torch.Generator().manual_seed(seed)
    n = max(2, min(12, spec.max_positions - 2))
    src = (
        torch.randint(5, spec.src_vocab_size, (2, n), generator=g)
        if spec.src_vocab_size > 5
        else torch.full((2, n), 1)
    )
    src[:, -1] = EOS
    src[1, n // 2 :] = PAD
    src[1, n // 2 - 1] = EOS
    return src  # fmt: skip


@torch.inference_mode()
def logit_difference(model: torch.nn.Module, hf: torch.nn.Module, src: Tensor) -> float:
    """Max |logit difference| between tfcli and the HF model on one batch (teacher forcing for
    seq2seq with a fixed target prefix; real positions only)."""
    real = src != PAD
    if model.spec.kind.value == "mlm":
        ours = model(src)
        theirs = hf(input_ids=src, attention_mask=real.long()).logits
        return (ours - theirs)[real].abs().max().item()
    tgt_in = torch.cat([torch.full_like(src[:, :1], BOS), src[:, :-1].clamp(min=5)], 1)
    ours = model(src, tgt_in)
    theirs = hf(input_ids=src, attention_mask=real.long(), decoder_input_ids=tgt_in).logits
    return (ours - theirs).abs().max().item()


def export_hf(checkpoint: Path, out: Path) -> dict:
    """Write `out` (atomically): config.json, model.safetensors, generation_config.json,
    tokenizer files and tfcli.json. Returns the tfcli.json record (with "max_logit_diff")."""
    from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM

    check_out_dir(out)
    meta = ckpt.read_meta(checkpoint)
    spec = ModelSpec.from_dict(meta.get("model"))
    target = hf_target(spec)  # refuse before loading any weights
    model, meta = ckpt.load_model(checkpoint)
    decode = (meta.get("recipe") or {}).get("decode") or {}
    hf = to_hf(model, decode)
    tok = ckpt.load_tokenizers(meta)["src"]
    mlm = target in (HFTarget.MEGATRON_BERT, HFTarget.ESM)
    hf_tok = hf_tokenizer(tok, masked_lm=mlm, max_length=spec.max_positions - (0 if mlm else 1))
    record = export_meta("hf", target.value, checkpoint, file_sha256(checkpoint), meta)
    with atomic_dir(Path(out), "HF export", error=CheckpointError) as tmp:
        hf.save_pretrained(tmp, safe_serialization=True)
        hf_tok.save_pretrained(tmp)
        auto = AutoModelForMaskedLM if mlm else AutoModelForSeq2SeqLM
        reloaded = auto.from_pretrained(tmp).eval()
        diff = logit_difference(model, reloaded, check_batch(spec))
        if not diff <= CHECK_TOLERANCE:
            raise CheckpointError(
                f"HF export self-check failed: logits differ by {diff:.2e} (> {CHECK_TOLERANCE}) "
                f"after reloading {target.value}; nothing was written (please report this)"
            )
        record["max_logit_diff"] = diff
        write_meta(tmp, record)
    return record


def generate_kwargs(beam_size: int, length_penalty: float, max_len: int) -> dict:
    """HF `generate` arguments that run tfcli's search: stop a sentence with `beam_size`
    finished hypotheses, score / length**penalty, never emit <pad> <s> <mask>, at most `max_len`
    output tokens then a forced </s> (beam_size 1 = greedy)."""
    return dict(
        num_beams=beam_size, do_sample=False, max_new_tokens=max_len + 1, min_new_tokens=1,
        early_stopping=True, length_penalty=length_penalty, suppress_tokens=[PAD, BOS, MASK],
        num_return_sequences=1, decoder_start_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
        forced_eos_token_id=EOS,
    )  # fmt: skip


def generated_ids(sequences: Tensor) -> list[list[int]]:
    """HF `generate` output (B, T) -> per row the ids after the start token, up to </s>."""
    out = []
    for row in sequences[:, 1:].tolist():
        out.append(row[: row.index(EOS)] if EOS in row else [t for t in row if t != PAD])
    return out
