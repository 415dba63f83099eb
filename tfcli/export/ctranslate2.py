"""tfcli -> CTranslate2: a converter in CTranslate2's own converter framework, the export, and
the conversion cache `tfcli decode --engine ctranslate2` uses for plain checkpoints.

`TfcliConverter` subclasses `ctranslate2.converters.Converter`, as CTranslate2's fairseq and
OpenNMT-py converters do: it fills a `TransformerSpec` from the tfcli weights, and CTranslate2's
`convert` validates it, quantizes it (int8, int16, float16, bfloat16, float32) and writes
model.bin, config.json and the vocabularies. This path (rather than TransformersConverter on the
HF export) needs no transformers, keeps tfcli's position table verbatim (no permutation), and
covers what the HF targets cannot: post-norm with learned positions and separate source/target
vocabularies. tfcli's fused q/k/v and k/v projections are CTranslate2's fused layout already.

The model adds </s> to the source itself (`add_source_eos`), starts decoding from <s>, and uses
LayerNorm epsilon 1e-5 (torch's), so plain CTranslate2 users pass just the subword pieces.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfcli.checkpoints import files as ckpt
from tfcli.errors import CheckpointError
from tfcli.export.meta import check_out_dir, export_meta, read_export, tokenizer_files, write_meta
from tfcli.export.support import check_ctranslate2
from tfcli.model.config import Activation, ModelSpec, NormPosition
from tfcli.textio import atomic_dir
from tfcli.tokenizer.staleness import file_sha256
from tfcli.tokenizer.vocab import BOS, EOS, SPECIALS, UNK

QUANTIZATIONS = ("int8", "int16", "float16", "bfloat16", "float32")
CHECK_TOLERANCE = 1e-3  # float32 export: max |log-prob difference| on the self-check sentences


def _require_ctranslate2():
    try:
        import ctranslate2
    except ImportError:
        raise CheckpointError(
            "CTranslate2 is not installed; pip install 'tfcli[export]' (or pip install ctranslate2)"
        ) from None
    return ctranslate2


def _converter_class():
    from ctranslate2.converters import Converter
    from ctranslate2.specs import common_spec, transformer_spec

    class TfcliConverter(Converter):
        """CTranslate2 converter for a loaded tfcli EncoderDecoder and its tokenizers."""

        def __init__(self, model, src_tok, tgt_tok) -> None:
            self.model, self.src_tok, self.tgt_tok = model, src_tok, tgt_tok

        def _load(self):
            spec: ModelSpec = self.model.spec
            act = (
                common_spec.Activation.GELU
                if spec.activation == Activation.GELU
                else common_spec.Activation.RELU
            )
            ct2 = transformer_spec.TransformerSpec.from_config(
                (spec.encoder_layers, spec.decoder_layers), spec.n_heads,
                pre_norm=spec.norm == NormPosition.PRE, activation=act,
            )  # fmt: skip
            s = {k: v.detach().float().numpy() for k, v in self.model.state_dict().items()}
            table = _table(self.model)
            _fill_side(ct2.encoder, s, "encoder", "src_embed", table, pre_norm=ct2.encoder.pre_norm)
            tgt = "tgt_embed" if "tgt_embed.tokens.weight" in s else "src_embed"
            _fill_side(ct2.decoder, s, "decoder", tgt, table, pre_norm=ct2.decoder.pre_norm)
            ct2.decoder.projection.weight = s["generator.proj.weight"]
            ct2.register_source_vocabulary(_pieces(self.src_tok))
            ct2.register_target_vocabulary(_pieces(self.tgt_tok))
            cfg = ct2.config
            cfg.unk_token, cfg.bos_token, cfg.eos_token = (
                SPECIALS[UNK],
                SPECIALS[BOS],
                SPECIALS[EOS],
            )
            cfg.decoder_start_token, cfg.add_source_eos = SPECIALS[BOS], True
            cfg.layer_norm_epsilon = 1e-5
            return ct2

    return TfcliConverter


def _table(model):
    """(max_positions, D) float32 numpy: the position vectors tfcli adds (both sides share the
    construction; a separate target embedding has its own learned table)."""
    import numpy as np

    def of(embed):
        pos = embed.positions
        t = getattr(pos, "table", None)
        return np.ascontiguousarray((t if t is not None else pos.weight).detach().float().numpy())

    return {"src_embed": of(model.src_embed), "tgt_embed": of(model.tgt_embed)}


def _fill_side(side, s: dict, stack: str, embed: str, tables: dict, *, pre_norm: bool) -> None:
    """Embeddings, positions, layers and the final norm of one CTranslate2 stack spec."""
    emb = side.embeddings[0] if isinstance(side.embeddings, list) else side.embeddings
    emb.weight = s[f"{embed}.tokens.weight"]
    side.scale_embeddings = True  # x sqrt(d_model), as tfcli
    side.position_encodings.encodings = tables[embed]
    for i, layer in enumerate(side.layer):
        a = f"{stack}.layers.{i}."
        _linear(layer.self_attention.linear[0], s, a + "self_attn.qkv_proj")
        _linear(layer.self_attention.linear[1], s, a + "self_attn.out_proj")
        _norm(layer.self_attention.layer_norm, s, a + "self_attn_norm")
        if stack == "decoder":
            _linear(layer.attention.linear[0], s, a + "cross_attn.q_proj")
            _linear(layer.attention.linear[1], s, a + "cross_attn.kv_proj")
            _linear(layer.attention.linear[2], s, a + "cross_attn.out_proj")
            _norm(layer.attention.layer_norm, s, a + "cross_attn_norm")
        _linear(layer.ffn.linear_0, s, a + "feed_forward.w_1")
        _linear(layer.ffn.linear_1, s, a + "feed_forward.w_2")
        _norm(layer.ffn.layer_norm, s, a + "feed_forward_norm")
    if pre_norm:
        _norm(side.layer_norm, s, f"{stack}.norm")


def _linear(spec, s: dict, name: str) -> None:
    spec.weight = s[name + ".weight"]
    if name + ".bias" in s:
        spec.bias = s[name + ".bias"]


def _norm(spec, s: dict, name: str) -> None:
    spec.gamma, spec.beta = s[name + ".weight"], s[name + ".bias"]


def _pieces(tok) -> list[str]:
    """The vocabulary as pieces in id order (CTranslate2 maps pieces to ids by position)."""
    return [tok.id_to_token(i) for i in range(tok.get_vocab_size())]


def export_ctranslate2(checkpoint: Path, out: Path, quantization: str = "float32") -> dict:
    """Write `out` (atomically): CTranslate2's model.bin, config.json and vocabularies, plus the
    tokenizer file(s) and tfcli.json. Returns the tfcli.json record."""
    if quantization not in QUANTIZATIONS:
        raise CheckpointError(
            f"--quantization {quantization}: expected one of {', '.join(QUANTIZATIONS)}"
        )
    _require_ctranslate2()
    check_out_dir(out)
    meta = ckpt.read_meta(checkpoint)
    check_ctranslate2(ModelSpec.from_dict(meta.get("model")))
    model, meta = ckpt.load_model(checkpoint)
    toks = ckpt.load_tokenizers(meta)
    record = export_meta(
        "ctranslate2", "TransformerSpec", checkpoint, file_sha256(checkpoint), meta,
        quantization=quantization,
    )  # fmt: skip
    converter = _converter_class()(model, toks["src"], toks["tgt"])
    with atomic_dir(Path(out), "CTranslate2 export", error=CheckpointError) as tmp:
        converter.convert(str(tmp), quantization=quantization, force=True)
        files = tokenizer_files(record["tokenizer"]["joint"])
        for side in ("src", "tgt"):
            toks[side].save(str(Path(tmp) / files[side]))
        if quantization == "float32":
            record["max_logprob_diff"] = _self_check(model, toks["src"], Path(tmp))
        write_meta(tmp, record)
    return record


def _self_check(model, src_tok, directory: Path) -> float:
    """Max |per-token log-prob difference| of CTranslate2 vs tfcli on two scored sentence pairs;
    CheckpointError above CHECK_TOLERANCE."""
    import torch

    from tfcli.export.hf import check_batch
    from tfcli.tokenizer.vocab import PAD

    ctranslate2 = _require_ctranslate2()
    src = check_batch(model.spec)
    rows = [[t for t in r if t != PAD][:-1] for r in src.tolist()]  # without </s>: CT2 adds it
    targets = [r[: max(1, len(r) // 2)] for r in rows]
    pieces = lambda ids: [src_tok.id_to_token(i) for i in ids]  # noqa: E731
    translator = ctranslate2.Translator(str(directory), device="cpu", compute_type="float32")
    scored = translator.score_batch([pieces(r) for r in rows], [pieces(t) for t in targets])
    worst = 0.0
    with torch.inference_mode():
        for row, tgt, result in zip(rows, targets, scored, strict=True):
            s = torch.tensor([[*row, EOS]])
            t_in = torch.tensor([[BOS, *tgt]])
            logp = model(s, t_in).float().log_softmax(-1)[0]  # (T, V)
            ours = logp.gather(1, torch.tensor([*tgt, EOS])[:, None]).squeeze(1)
            worst = max(worst, (ours - torch.tensor(result.log_probs)).abs().max().item())
    if not worst <= CHECK_TOLERANCE:
        raise CheckpointError(
            f"CTranslate2 export self-check failed: log-probs differ by {worst:.2e} "
            f"(> {CHECK_TOLERANCE}); nothing was written (please report this)"
        )
    return worst


# --- the conversion cache of `tfcli decode --engine ctranslate2` ------------------------------


def cache_root() -> Path:
    """$TFCLI_CACHE_DIR, else $XDG_CACHE_HOME/tfcli, else ~/.cache/tfcli."""
    if os.environ.get("TFCLI_CACHE_DIR"):
        return Path(os.environ["TFCLI_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tfcli"


def cached_conversion(checkpoint: Path, quantization: str) -> tuple[Path, bool]:
    """(directory, converted now?): the CTranslate2 export of `checkpoint` at `quantization`,
    keyed by the checkpoint's SHA-256, converted (atomically) on first use."""
    sha = file_sha256(checkpoint)
    out = cache_root() / "ctranslate2" / f"{sha[:32]}-{quantization}"
    record = read_export(out) if out.is_dir() else None
    if record is not None and record.get("source", {}).get("sha256") == sha:
        return out, False
    out.parent.mkdir(parents=True, exist_ok=True)
    export_ctranslate2(checkpoint, out, quantization)
    return out, True
