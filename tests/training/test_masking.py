"""Statistical and structural tests of BERT masking over more than a million tokens."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from tfcli.errors import TokenizerError
from tfcli.recipe.schema import MLMConfig
from tfcli.training.masking import (
    IGNORE_INDEX,
    MASK_ID,
    NUM_SPECIALS,
    batch_generator,
    mask_tokens,
    valid_generator,
    word_start_table,
)

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]


def _corpus(vocab_size: int, rows: int = 1024, cols: int = 1024, seed: int = 0) -> torch.Tensor:
    """(rows, cols) ids: uniform non-special tokens, sprinkled specials, padded row tails."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_SPECIALS, vocab_size, (rows, cols), generator=g)
    specials = torch.rand(rows, cols, generator=g) < 0.05
    ids[specials] = torch.randint(1, NUM_SPECIALS, (int(specials.sum()),), generator=g)
    lengths = torch.randint(cols // 2, cols + 1, (rows,), generator=g)
    ids[torch.arange(cols)[None, :] >= lengths[:, None]] = 0
    return ids


@pytest.fixture(scope="module")
def masked() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    vocab = 1000
    ids = _corpus(vocab)
    assert ids.numel() >= 1_000_000
    inputs, labels = mask_tokens(ids, MLMConfig(), vocab, batch_generator(1, 0, 0))
    return ids, inputs, labels, vocab


def test_selection_rate_is_15_percent_of_eligible(masked) -> None:
    ids, _, labels, _ = masked
    eligible = ids >= NUM_SPECIALS
    selected = labels != IGNORE_INDEX
    rate = selected.sum().item() / eligible.sum().item()
    assert abs(rate - 0.15) < 0.002, rate


def test_split_is_80_10_10(masked) -> None:
    ids, inputs, labels, vocab = masked
    selected = labels != IGNORE_INDEX
    n = selected.sum().item()
    as_mask = (inputs[selected] == MASK_ID).sum().item() / n
    changed = ((inputs[selected] != ids[selected]) & (inputs[selected] != MASK_ID)).sum().item() / n
    kept = (inputs[selected] == ids[selected]).sum().item() / n
    # A random draw equals the original with probability 1/(V-5): it then looks "kept".
    hit = 1 / (vocab - NUM_SPECIALS)
    assert abs(as_mask - 0.8) < 0.005, as_mask
    assert abs(changed - 0.1 * (1 - hit)) < 0.005, changed
    assert abs(kept - (0.1 + 0.1 * hit)) < 0.005, kept


def test_specials_and_padding_never_selected_nor_drawn(masked) -> None:
    ids, inputs, labels, _ = masked
    special = ids < NUM_SPECIALS
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(inputs[special], ids[special])
    unselected = labels == IGNORE_INDEX
    assert torch.equal(inputs[unselected], ids[unselected])
    replaced = (labels != IGNORE_INDEX) & (inputs != MASK_ID)
    assert (inputs[replaced] >= NUM_SPECIALS).all()


def test_labels_hold_the_original_ids(masked) -> None:
    ids, _, labels, _ = masked
    selected = labels != IGNORE_INDEX
    assert torch.equal(labels[selected], ids[selected])
    assert set(labels[~selected].unique().tolist()) == {IGNORE_INDEX}


def _chi2_critical(k: int, z: float = 3.0902) -> float:
    """Upper 0.1% point of chi-square with k degrees of freedom (scipy is not a dependency).

    Wilson-Hilferty: (X/k)^(1/3) is close to normal with mean 1 - 2/(9k) and variance 2/(9k),
    so the quantile is k * (1 - 2/(9k) + z * sqrt(2/(9k)))^3 with z = Phi^-1(0.999) = 3.0902.
    For k = 99 this gives 148.2 (tables: 148.23).
    """
    c = 2 / (9 * k)
    return k * (1 - c + z * math.sqrt(c)) ** 3


def test_chi2_critical_value_matches_tables() -> None:
    assert abs(_chi2_critical(99) - 148.23) < 0.2
    assert abs(_chi2_critical(10) - 29.59) < 0.3


def test_random_replacements_are_uniform_over_non_special_vocabulary() -> None:
    vocab = 105  # 100 non-special bins: ~300 draws per bin from 2M tokens
    ids = torch.full((2048, 1024), 50, dtype=torch.long)  # one constant token: any change is a draw
    cfg = MLMConfig(mask_prob=0.15, replace_mask_prob=0.8, replace_random_prob=0.1, keep_prob=0.1)
    inputs, labels = mask_tokens(ids, cfg, vocab, batch_generator(7, 0, 0))
    selected = labels != IGNORE_INDEX
    # Positions that were not masked: kept (input 50) or random (any of the 100 tokens, 50 too);
    # the 50-bin mixes both, so test uniformity over the 99 other bins only.
    drawn = inputs[selected & (inputs != MASK_ID) & (inputs != 50)]
    assert drawn.min() >= NUM_SPECIALS and drawn.max() < vocab
    counts = torch.bincount(drawn - NUM_SPECIALS, minlength=vocab - NUM_SPECIALS).double()
    counts = torch.cat([counts[: 50 - NUM_SPECIALS], counts[50 - NUM_SPECIALS + 1 :]])
    expected = counts.sum() / counts.numel()
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < _chi2_critical(counts.numel() - 1), chi2
    assert counts.min() > 0


def test_same_seed_same_masks_other_epoch_different() -> None:
    ids = _corpus(500, rows=64, cols=128)
    a = mask_tokens(ids, MLMConfig(), 500, batch_generator(3, 1, 10))
    b = mask_tokens(ids, MLMConfig(), 500, batch_generator(3, 1, 10))
    c = mask_tokens(ids, MLMConfig(), 500, batch_generator(3, 2, 10))
    d = mask_tokens(ids, MLMConfig(), 500, batch_generator(3, 1, 11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert not torch.equal(a[1], d[1])
    v1 = mask_tokens(ids, MLMConfig(), 500, valid_generator(3, 0))
    v2 = mask_tokens(ids, MLMConfig(), 500, valid_generator(3, 0))
    assert torch.equal(v1[1], v2[1]) and not torch.equal(v1[1], a[1])


def _word_corpus(
    rows: int, cols: int, vocab: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids over a vocabulary whose even ids start words and odd ids continue them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_SPECIALS, vocab, (rows, cols), generator=g)
    ids[torch.rand(rows, cols, generator=g) < 0.03] = 3  # sentence separators inside blocks
    ids[:, -7:] = 0
    table = torch.arange(vocab) % 2 == 0
    table[:NUM_SPECIALS] = True
    return ids, table


def test_whole_word_masking_never_splits_a_word() -> None:
    vocab = 1000
    ids, table = _word_corpus(1024, 1024, vocab)
    cfg = MLMConfig(whole_word=True)
    inputs, labels = mask_tokens(ids, cfg, vocab, batch_generator(5, 0, 0), word_starts=table)
    selected = labels != IGNORE_INDEX
    eligible = ids >= NUM_SPECIALS
    # A continuation token (odd id) after an eligible token shares its word: same selection.
    cont = eligible[:, 1:] & eligible[:, :-1] & ~table[ids[:, 1:]]
    assert torch.equal(selected[:, 1:][cont], selected[:, :-1][cont])
    assert not selected[~eligible].any()
    rate = selected.sum().item() / eligible.sum().item()
    assert abs(rate - 0.15) < 0.003, rate  # per-word draws: the token rate holds in expectation
    as_mask = (inputs[selected] == MASK_ID).float().mean().item()
    assert abs(as_mask - 0.8) < 0.005
    # Words do get split across rows by nothing else: some multi-token words are selected.
    assert (selected[:, 1:][cont]).any()


def test_whole_word_needs_the_table() -> None:
    with pytest.raises(ValueError, match="word_starts"):
        mask_tokens(torch.full((1, 4), 9), MLMConfig(whole_word=True), 20, batch_generator(1, 0, 0))


TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "unbelievable happenings in the countryside",
    "a man a plan a canal panama",
    "internationalization is a very long word",
] * 50


def _train(model, pre, trainer_cls, **kw) -> Tokenizer:
    tok = Tokenizer(model)
    tok.pre_tokenizer = pre
    tok.train_from_iterator(TEXT, trainer_cls(vocab_size=120, special_tokens=SPECIALS, **kw))
    return tok


@pytest.mark.parametrize(
    "make",
    [
        lambda: _train(
            models.BPE(unk_token="<unk>"), pre_tokenizers.Metaspace(), trainers.BpeTrainer
        ),
        lambda: _train(
            models.BPE(), pre_tokenizers.ByteLevel(add_prefix_space=True), trainers.BpeTrainer
        ),
        lambda: _train(
            models.WordPiece(unk_token="<unk>"),
            pre_tokenizers.Whitespace(),
            trainers.WordPieceTrainer,
        ),
        lambda: _train(
            models.Unigram(), pre_tokenizers.Metaspace(), trainers.UnigramTrainer, unk_token="<unk>"
        ),
    ],
    ids=["bpe-metaspace", "bpe-bytelevel", "wordpiece", "unigram"],
)
def test_word_start_table_marks_exactly_the_first_piece_of_each_word(make) -> None:
    tok = make()
    table = word_start_table(tok)
    assert table.shape == (tok.get_vocab_size(),) and table[:NUM_SPECIALS].all()
    for sentence in ["internationalization unbelievable", "the countryside canal"]:
        enc = tok.encode(sentence)
        # Offsets give each piece's word (spaces before its end); a piece starts a word when
        # its word differs from the previous piece's (a lone '▁' piece opens the next word).
        words = [sentence[:end].count(" ") for _, end in enc.offsets]
        starts_word = [i == 0 or w != words[i - 1] for i, w in enumerate(words)]
        assert table[enc.ids].tolist() == starts_word, (enc.tokens, starts_word)


def test_word_start_table_refuses_a_tokenizer_without_boundaries() -> None:
    tok = _train(models.BPE(unk_token="<unk>"), pre_tokenizers.Whitespace(), trainers.BpeTrainer)
    with pytest.raises(TokenizerError, match="mlm.whole_word"):
        word_start_table(tok)


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram"])
@pytest.mark.parametrize("pre", ["metaspace", "byte_level"])
def test_word_start_table_of_tfcli_tokenizers(tmp_path, kind: str, pre: str) -> None:
    """The vocabularies `tfcli tokenize` trains (no '##' prefix: the marker decides).

    A line's first piece carries no 'Ġ' in byte-level vocabularies; it starts a word by
    position instead (after <s>, or at a row's start: see _word_ids), so it is not compared.
    """
    from tfcli.recipe.schema import PreTokenizer, TokenizerConfig, TokenizerType
    from tfcli.tokenizer.training import train_tokenizer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXT) + "\n", encoding="utf-8")
    cfg = TokenizerConfig(
        type=TokenizerType(kind), pre_tokenizer=PreTokenizer(pre), vocab_size=400, min_frequency=1
    )
    tok = train_tokenizer([corpus], cfg, show_progress=False)
    table = word_start_table(tok)
    for sentence in ["internationalization unbelievable", "the countryside canal"]:
        enc = tok.encode(sentence)
        words = [sentence[:end].count(" ") for _, end in enc.offsets]
        starts_word = [w != words[i - 1] for i, w in enumerate(words) if i > 0]
        assert table[enc.ids[1:]].tolist() == starts_word, (enc.tokens, starts_word)
