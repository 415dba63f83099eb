"""The rules that a recipe's types alone cannot express, each a one-line problem message.

The model's own rules (sizes, heads dividing the width, rotary head size, dropout ranges) are
`Architecture.problems` in tfcli.model.config, the same checks a checkpoint's spec passes on
loading; here they are named `model.<field>`, beside the rules of the other sections and those
that span two sections.
"""

from __future__ import annotations

from tfcli.recipe.schema import Recipe

MAX_VOCAB_SIZE = 1 << 20  # ids are uint32 on disk; HF trainers allocate per entry


def recipe_problems(r: Recipe) -> list[str]:
    """Every cross-field problem of a typed recipe (empty when valid)."""
    positive = {
        "tokenizer.vocab_size": r.tokenizer.vocab_size,
        "train.max_tokens": r.train.max_tokens,
        "train.accumulate": r.train.accumulate,
        "train.eval_every": r.train.eval_every,
        "train.log_every": r.train.log_every,
        "mlm.block_size": r.mlm.block_size,
        "mlm.batch_size": r.mlm.batch_size,
        "decode.beam_size": r.decode.beam_size,
        "decode.nbest": r.decode.nbest,
        "decode.max_tokens": r.decode.max_tokens,
    }
    t, d, o = r.train, r.decode, r.optim
    not_negative = {
        "data.min_len": r.data.min_len,
        "data.max_len": r.data.max_len,
        "data.max_len_ratio": r.data.max_len_ratio,
        "tokenizer.min_frequency": r.tokenizer.min_frequency,
        "tokenizer.max_lines": r.tokenizer.max_lines,
        "optim.weight_decay": o.weight_decay,
        "optim.warmup_steps": o.warmup_steps,
        "optim.min_lr": o.min_lr,
        "optim.clip_norm": o.clip_norm,
        "train.max_steps": t.max_steps,
        "train.max_epochs": t.max_epochs,
        "train.max_minutes": t.max_minutes,
        "train.patience": t.patience,
        "train.eval_max_sentences": t.eval_max_sentences,
        "train.save_every": t.save_every,
        "train.keep_last": t.keep_last,
        "decode.max_len_a": d.max_len_a,
        "decode.max_len_b": d.max_len_b,
        "decode.min_len": d.min_len,
        "decode.no_repeat_ngram": d.no_repeat_ngram,
        "decode.top_k": d.top_k,
    }
    positive.update(
        {
            "optim.eps": o.eps,
            "train.max_nan_steps": t.max_nan_steps,
            "decode.topk_fill": d.topk_fill,
        }
    )
    p = [f"{k}: must be > 0, got {v}" for k, v in positive.items() if v <= 0]
    p += [f"{k}: must be >= 0, got {v}" for k, v in not_negative.items() if v < 0]
    from tfcli.tokenizer.training import min_vocab_size

    if 0 < r.tokenizer.vocab_size < min_vocab_size(r.tokenizer):
        p.append(
            f"tokenizer.vocab_size: at least {min_vocab_size(r.tokenizer)} for a "
            f"{r.tokenizer.pre_tokenizer.value} vocabulary (specials"
            f"{' + 256 bytes' if r.tokenizer.pre_tokenizer.value == 'byte_level' else ''} + 1), "
            f"got {r.tokenizer.vocab_size}"
        )
    if r.tokenizer.vocab_size > MAX_VOCAB_SIZE:
        p.append(
            f"tokenizer.vocab_size: at most {MAX_VOCAB_SIZE:,}, got {r.tokenizer.vocab_size:,} "
            "(larger vocabularies exhaust memory while training the tokenizer)"
        )
    p += r.model.problems("model.")
    if r.model.share_embeddings and not r.tokenizer.joint:
        p.append("model.share_embeddings: needs tokenizer.joint: true (one vocabulary to share)")
    if not 0.0 <= r.train.label_smoothing < 1.0:
        p.append(f"train.label_smoothing: must be in [0, 1), got {r.train.label_smoothing}")
    if len(r.optim.betas) != 2:
        p.append(f"optim.betas: expected two numbers, got {r.optim.betas}")
    if r.optim.lr <= 0:
        p.append(f"optim.lr: must be > 0, got {r.optim.lr}")
    if not 0.0 < r.mlm.mask_prob < 1.0:
        p.append(f"mlm.mask_prob: must be in (0, 1), got {r.mlm.mask_prob}")
    split = (r.mlm.replace_mask_prob, r.mlm.replace_random_prob, r.mlm.keep_prob)
    if any(x < 0 for x in split) or abs(sum(split) - 1.0) > 1e-6:
        p.append(
            "mlm: replace_mask_prob + replace_random_prob + keep_prob must be non-negative and "
            f"sum to 1, got {' + '.join(str(x) for x in split)} = {sum(split):g}"
        )
    if r.decode.temperature <= 0:
        p.append(f"decode.temperature: must be > 0, got {r.decode.temperature}")
    if not 0.0 < r.decode.top_p <= 1.0:
        p.append(f"decode.top_p: must be in (0, 1], got {r.decode.top_p}")
    if len(r.data.src) != len(r.data.tgt) and r.data.src and r.data.tgt:
        p.append(f"data.src has {len(r.data.src)} entries but data.tgt has {len(r.data.tgt)}")
    return p
