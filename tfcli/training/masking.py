"""BERT-style token masking for masked-LM pretraining (vectorised, reproducible).

`mask_tokens` selects `mask_prob` of the eligible positions (never a special token, never
padding) and corrupts the selected ones: `replace_mask_prob` become `<mask>`,
`replace_random_prob` become a token drawn uniformly from the non-special vocabulary
`[NUM_SPECIALS, vocab_size)`, `keep_prob` stay as they are. Labels hold the original id at the
selected positions and -100 (ignored by the loss) elsewhere.

Selection is a Bernoulli draw per position (per word with whole-word masking), as in BERT's
and HF's collators: the rate holds in expectation, not exactly per sequence, which keeps the
draw a single vectorised comparison.

Whole-word masking draws one Bernoulli(`mask_prob`) per *word* and selects every token of a
chosen word. Each token is then selected exactly when its word is, so each token's selection
probability is still `mask_prob` and the expected fraction of selected tokens is `mask_prob`
(E[selected] = sum over words of mask_prob * len(word) = mask_prob * tokens). The corruption
(mask / random / keep) is still decided per token, as in Google's whole-word BERT.

Masks are dynamic: callers build a fresh generator per batch with `batch_generator(seed,
epoch, index)`, so every epoch sees new masks, and a resumed run sees the same ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tfcli.errors import TokenizerError
from tfcli.tokenizer.vocab import MASK, SPECIALS

if TYPE_CHECKING:
    from tfcli.recipe.schema import MLMConfig

MASK_ID = MASK
NUM_SPECIALS = len(
    SPECIALS
)  # <pad> <unk> <s> </s> <mask> hold ids 0..4: never selected, never drawn
IGNORE_INDEX = -100  # cross_entropy's default ignore_index

# Tag mixed into the seed of validation masks so they never coincide with a training epoch's.
_VALID_STREAM = 0x7661_6C69


def batch_generator(
    seed: int, epoch: int, index: int, device: str | torch.device = "cpu"
) -> torch.Generator:
    """A generator seeded from (seed, epoch, index): one independent stream per batch.

    `index` is the batch's position in its epoch (or its first example's index). SeedSequence
    hashes the tuple, so (1, 2, 0) and (2, 1, 0) give unrelated streams.
    """
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2, np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def valid_generator(seed: int, index: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The fixed stream for validation batch `index`: the same mask at every evaluation."""
    return batch_generator(seed, _VALID_STREAM, index, device)


def _word_ids(ids: torch.Tensor, eligible: torch.Tensor, word_starts: torch.Tensor) -> torch.Tensor:
    """(B,T) running word index over the whole batch; every ineligible token is its own word.

    A token starts a word when the vocabulary says so, when it opens a row, or when the token
    before it is ineligible (special or padding): a sentence boundary inside a packed block
    always ends a word, even for byte-level vocabularies whose first word has no 'Ġ'.
    """
    starts = word_starts.to(ids.device)[ids] | ~eligible
    starts[:, 0] = True
    starts[:, 1:] |= ~eligible[:, :-1]
    return starts.reshape(-1).cumsum(0).reshape(ids.shape) - 1


def mask_tokens(
    ids: torch.Tensor,
    cfg: MLMConfig,
    vocab_size: int,
    generator: torch.Generator,
    word_starts: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch for masked-LM training.

    ids: (B,T) LongTensor of token ids, PAD=0 where padded (not modified).
    cfg: mask_prob, replace_mask_prob, replace_random_prob (keep_prob is the rest), whole_word.
    vocab_size: V; random replacements are drawn uniformly from [NUM_SPECIALS, V).
    generator: a torch.Generator on ids.device (see `batch_generator`).
    word_starts: (V,) bool lookup table from `word_start_table`; required when cfg.whole_word.
    Returns (inputs (B,T) LongTensor, labels (B,T) LongTensor with IGNORE_INDEX off-selection).
    """
    if ids.dim() != 2:
        raise ValueError(f"mask_tokens expects (B, T) ids, got shape {tuple(ids.shape)}")
    if vocab_size <= NUM_SPECIALS:
        raise ValueError(f"vocab_size {vocab_size} leaves no non-special token to draw")
    dev = ids.device
    eligible = ids >= NUM_SPECIALS
    if ids.numel() == 0:
        return ids.clone(), torch.full_like(ids, IGNORE_INDEX)
    if cfg.whole_word:
        if word_starts is None:
            raise ValueError("mlm.whole_word needs the word_starts table (word_start_table)")
        words = _word_ids(ids, eligible, word_starts)
        chosen = torch.rand(int(words[-1, -1]) + 1, generator=generator, device=dev) < cfg.mask_prob
        selected = chosen[words] & eligible
    else:
        selected = (
            torch.rand(ids.shape, generator=generator, device=dev) < cfg.mask_prob
        ) & eligible
    action = torch.rand(ids.shape, generator=generator, device=dev)
    to_mask = selected & (action < cfg.replace_mask_prob)
    to_random = selected & ~to_mask & (action < cfg.replace_mask_prob + cfg.replace_random_prob)
    random_ids = torch.randint(NUM_SPECIALS, vocab_size, ids.shape, generator=generator, device=dev)
    inputs = torch.where(to_mask, torch.full_like(ids, MASK_ID), ids)
    inputs = torch.where(to_random, random_ids, inputs)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels


def _space_marker(tokenizer: Any) -> str:
    """The prefix the pre-tokenizer puts on a word that follows a space ('▁', 'Ġ'), or ''."""
    pre = tokenizer.pre_tokenizer
    if pre is None:
        return ""
    pieces = [p for p, _ in pre.pre_tokenize_str("a b")]
    if len(pieces) < 2 or not pieces[-1].endswith("b"):
        return ""
    return pieces[-1][:-1]


def word_start_table(tokenizer: Any) -> torch.Tensor:
    """(V,) bool: True where a vocabulary piece begins a word (specials count as starts).

    Derived from the tokenizer itself, once per vocabulary:
    * a model with a continuing-subword prefix (WordPiece's '##', or a BPE trained with one):
      a piece starts a word unless it carries that prefix;
    * otherwise the pre-tokenizer's space marker, found by pre-tokenizing "a b" (Metaspace
      gives '▁b', byte-level 'Ġb'): a piece starts a word when it carries the marker.
    Raises TokenizerError when neither exists (e.g. a plain whitespace split with BPE).
    """
    prefix = getattr(tokenizer.model, "continuing_subword_prefix", None) or ""
    marker = "" if prefix else _space_marker(tokenizer)
    if not prefix and not marker:
        raise TokenizerError(
            f"mlm.whole_word: cannot find word boundaries in this {type(tokenizer.model).__name__} "
            "tokenizer (no continuing-subword prefix, no space marker such as '▁' or 'Ġ'); "
            "use a metaspace or byte_level pre-tokenizer, a wordpiece vocabulary, or set "
            "mlm.whole_word: false"
        )
    table = torch.ones(tokenizer.get_vocab_size(with_added_tokens=True), dtype=torch.bool)
    for piece, idx in tokenizer.get_vocab(with_added_tokens=True).items():
        if idx < NUM_SPECIALS:
            continue
        table[idx] = not piece.startswith(prefix) if prefix else piece.startswith(marker)
    return table
