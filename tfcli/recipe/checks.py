"""The rules that a recipe's types alone cannot express, each a one-line problem message.

The model's own rules (sizes, heads dividing the width, rotary head size, dropout ranges) are
`Architecture.problems` in tfcli.model.config, the same checks a checkpoint's spec passes on
loading; here they are named `model.<field>`, beside the rules of the other sections and those
that span two sections.
"""

from __future__ import annotations

from tfcli.recipe.schema import Recipe

MAX_VOCAB_SIZE = 1 << 20  # ids are uint32 on disk; HF trainers allocate per entry

POSITIVE = (
    "tokenizer.vocab_size", "optim.eps", "train.max_tokens", "train.accumulate",
    "train.eval_every", "train.log_every", "train.max_nan_steps", "mlm.block_size",
    "mlm.batch_size", "decode.beam_size", "decode.nbest", "decode.max_tokens", "decode.topk_fill",
    "optim.lr", "decode.temperature", "decode.iterations", "decode.length_beam",
)  # fmt: skip
NOT_NEGATIVE = (
    "data.min_len", "data.max_len", "data.max_len_ratio", "tokenizer.min_frequency",
    "tokenizer.max_lines", "optim.weight_decay", "optim.warmup_steps", "optim.min_lr",
    "optim.clip_norm", "train.max_steps", "train.max_epochs", "train.max_minutes",
    "train.patience", "train.eval_max_sentences", "train.save_every", "train.keep_last",
    "decode.max_len_a", "decode.max_len_b", "decode.min_len", "decode.no_repeat_ngram",
    "decode.top_k", "train.exposure_warmup", "train.guided_attention",
    "train.guided_attention_decay", "train.length_loss_weight", "decode.length_ratio",
)  # fmt: skip


def recipe_problems(r: Recipe) -> list[str]:
    """Every cross-field problem of a typed recipe (empty when valid)."""
    p = [f"{k}: must be > 0, got {v}" for k in POSITIVE if (v := _value(r, k)) <= 0]
    p += [f"{k}: must be >= 0, got {v}" for k in NOT_NEGATIVE if (v := _value(r, k)) < 0]
    p += _vocabulary_problems(r)
    p += r.model.problems("model.")
    p += _other_problems(r)
    return p


def _value(r: Recipe, dotted: str) -> float:
    section, key = dotted.split(".")
    return getattr(getattr(r, section), key)


def _vocabulary_problems(r: Recipe) -> list[str]:
    from tfcli.tokenizer.training import min_vocab_size

    size, need, p = r.tokenizer.vocab_size, min_vocab_size(r.tokenizer), []
    if 0 < size < need:
        pre = r.tokenizer.pre_tokenizer.value
        extra = " + 256 bytes" if pre == "byte_level" else ""
        p.append(f"tokenizer.vocab_size: at least {need} for a {pre} vocabulary (specials{extra}"
                 f" + 1), got {size}")  # fmt: skip
    if size > MAX_VOCAB_SIZE:
        p.append(
            f"tokenizer.vocab_size: at most {MAX_VOCAB_SIZE:,}, got {size:,} "
            "(larger vocabularies exhaust memory while training the tokenizer)"
        )
    if r.model.share_embeddings and not r.tokenizer.joint:
        p.append("model.share_embeddings: needs tokenizer.joint: true (one vocabulary to share)")
    return p


def _other_problems(r: Recipe) -> list[str]:
    p = []
    if not 0.0 <= r.train.label_smoothing < 1.0:
        p.append(f"train.label_smoothing: must be in [0, 1), got {r.train.label_smoothing}")
    if not 0.0 <= r.train.exposure_prob <= 1.0:
        p.append(f"train.exposure_prob: must be in [0, 1], got {r.train.exposure_prob}")
    p += _guided_problems(r)
    p += _corpus_problems(r)
    p += _nat_problems(r)
    if len(r.optim.betas) != 2:
        p.append(f"optim.betas: expected two numbers, got {r.optim.betas}")
    if not 0.0 < r.mlm.mask_prob < 1.0:
        p.append(f"mlm.mask_prob: must be in (0, 1), got {r.mlm.mask_prob}")
    split = (r.mlm.replace_mask_prob, r.mlm.replace_random_prob, r.mlm.keep_prob)
    if any(x < 0 for x in split) or abs(sum(split) - 1.0) > 1e-6:
        p.append(
            "mlm: replace_mask_prob + replace_random_prob + keep_prob must be non-negative and "
            f"sum to 1, got {' + '.join(str(x) for x in split)} = {sum(split):g}"
        )
    if not 0.0 < r.decode.top_p <= 1.0:
        p.append(f"decode.top_p: must be in (0, 1], got {r.decode.top_p}")
    if len(r.data.src) != len(r.data.tgt) and r.data.src and r.data.tgt:
        p.append(f"data.src has {len(r.data.src)} entries but data.tgt has {len(r.data.tgt)}")
    return p


def _guided_problems(r: Recipe) -> list[str]:
    """train.guided_attention_*: a positive width, layers that exist in the decoder."""
    if r.train.guided_attention <= 0:
        return []
    p, n = [], r.model.decoder_layers
    if r.train.guided_attention_width <= 0:
        p.append(f"train.guided_attention_width: must be > 0, got {r.train.guided_attention_width}")
    layers = r.train.guided_attention_layers
    bad = [i for i in layers if not (1 <= i <= n or -n <= i <= -1)]
    if not layers or bad:
        p.append(
            f"train.guided_attention_layers: decoder layers 1..{n} (or -1..-{n} from the last), "
            f"got {layers}"
        )
    elif len({i - 1 if i > 0 else n + i for i in layers}) != len(layers):
        p.append(f"train.guided_attention_layers: names a layer twice: {layers}")
    return p


def _nat_problems(r: Recipe) -> list[str]:
    """model.decoder: non_autoregressive trains as a conditional masked LM: no decoder feeds on
    its own previous outputs, so the exposure-bias remedies have nothing to act on."""
    if r.model.decoder.value != "non_autoregressive":
        return []
    p = []
    if r.train.exposure.value != "none":
        p.append(
            f"train.exposure: {r.train.exposure.value} feeds an autoregressive decoder its own "
            "outputs; model.decoder: non_autoregressive has none (set train.exposure: none)"
        )
    if getattr(r.train, "guided_attention", 0) > 0:
        p.append(
            "train.guided_attention: guides the teacher-forced decoder's cross-attention; the "
            "non-autoregressive objective does not apply it (set train.guided_attention: 0)"
        )
    return p


def _corpus_problems(r: Recipe) -> list[str]:
    """data.weights (one positive weight per data.src entry), data.bpe_dropout (a BPE
    vocabulary, a probability) and train.init_from (not beside model.init_encoder_from)."""
    d, p = r.data, []
    if d.weights and len(d.weights) != len(d.src):
        p.append(
            f"data.weights: one weight per data.src entry, got {len(d.weights)} weights for "
            f"{len(d.src)} entries"
        )
    if any(w <= 0 for w in d.weights):
        p.append(f"data.weights: every weight must be > 0, got {d.weights}")
    if not 0.0 <= d.bpe_dropout < 1.0:
        p.append(f"data.bpe_dropout: must be in [0, 1), got {d.bpe_dropout}")
    if d.bpe_dropout_copies < 1:
        p.append(f"data.bpe_dropout_copies: must be >= 1, got {d.bpe_dropout_copies}")
    if d.bpe_dropout > 0 and r.tokenizer.type.value != "bpe" and not r.tokenizer.path:
        p.append(
            f"data.bpe_dropout: needs a BPE vocabulary (tokenizer.type: bpe), got "
            f"{r.tokenizer.type.value}"
        )
    if r.train.init_from and r.model.init_encoder_from:
        p.append(
            "train.init_from: loads every weight, so model.init_encoder_from has nothing left "
            "to initialise; set one of them"
        )
    return p
