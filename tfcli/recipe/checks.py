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
    "optim.lr", "decode.temperature",
)  # fmt: skip
NOT_NEGATIVE = (
    "data.min_len", "data.max_len", "data.max_len_ratio", "tokenizer.min_frequency",
    "tokenizer.max_lines", "optim.weight_decay", "optim.warmup_steps", "optim.min_lr",
    "optim.clip_norm", "train.max_steps", "train.max_epochs", "train.max_minutes",
    "train.patience", "train.eval_max_sentences", "train.save_every", "train.keep_last",
    "decode.max_len_a", "decode.max_len_b", "decode.min_len", "decode.no_repeat_ngram",
    "decode.top_k", "train.exposure_warmup",
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
