"""The demo generator: correct number words, determinism, aligned and disjoint splits."""

from __future__ import annotations

import random
import re

import pytest

from tfcli import demo
from tfcli.errors import TfcliError

# Hand-checked against the traditional French rules (et-un up to 71, quatre-vingts / cents only
# when last, mille invariable and never 'un mille') and American English (no 'and').
NUMBERS = [
    (0, "zero", "zéro"),
    (1, "one", "un"),
    (7, "seven", "sept"),
    (16, "sixteen", "seize"),
    (17, "seventeen", "dix-sept"),
    (21, "twenty-one", "vingt et un"),
    (22, "twenty-two", "vingt-deux"),
    (70, "seventy", "soixante-dix"),
    (71, "seventy-one", "soixante et onze"),
    (77, "seventy-seven", "soixante-dix-sept"),
    (80, "eighty", "quatre-vingts"),
    (81, "eighty-one", "quatre-vingt-un"),
    (90, "ninety", "quatre-vingt-dix"),
    (91, "ninety-one", "quatre-vingt-onze"),
    (99, "ninety-nine", "quatre-vingt-dix-neuf"),
    (100, "one hundred", "cent"),
    (101, "one hundred one", "cent un"),
    (180, "one hundred eighty", "cent quatre-vingts"),
    (200, "two hundred", "deux cents"),
    (201, "two hundred one", "deux cent un"),
    (1000, "one thousand", "mille"),
    (1001, "one thousand one", "mille un"),
    (2000, "two thousand", "deux mille"),
    (21000, "twenty-one thousand", "vingt et un mille"),
    (80000, "eighty thousand", "quatre-vingt mille"),
    (200000, "two hundred thousand", "deux cent mille"),
    (300400, "three hundred thousand four hundred", "trois cent mille quatre cents"),
    (
        999999,
        "nine hundred ninety-nine thousand nine hundred ninety-nine",
        "neuf cent quatre-vingt-dix-neuf mille neuf cent quatre-vingt-dix-neuf",
    ),
    (1000000, "one million", "un million"),
]


@pytest.mark.parametrize(("n", "english", "french"), NUMBERS)
def test_number_words(n, english, french):
    assert demo.english_number(n) == english
    assert demo.french_number(n) == french


@pytest.mark.parametrize(
    ("n", "feminine"),
    [(1, "une"), (21, "vingt et une"), (81, "quatre-vingt-une"), (1001, "mille une"), (71, "soixante et onze"),
     (21000, "vingt et un mille"), (21021, "vingt et un mille vingt et une")],
)  # fmt: skip
def test_french_feminine_agrees_only_the_final_un(n, feminine):
    assert demo.french_number(n, feminine=True) == feminine


def test_number_words_out_of_range():
    for bad in (-1, 1_000_001):
        with pytest.raises(ValueError):
            demo.english_number(bad)
        with pytest.raises(ValueError):
            demo.french_number(bad)


def test_every_number_has_well_formed_words():
    """No doubled spaces or hyphens, no stray 'zero' inside a number, over a sample of 0..10^6."""
    rng = random.Random(0)
    for n in [*range(0, 1200), *(rng.randint(0, 1_000_000) for _ in range(3000))]:
        for words in (
            demo.english_number(n),
            demo.french_number(n),
            demo.french_number(n, feminine=True),
        ):
            assert re.fullmatch(r"[a-zéè]+([ -][a-zéè]+)*", words), words
            if n:
                assert "zero" not in words and "zéro" not in words, words


def test_sentences_agree_in_gender_and_number():
    """Sample sentences show the rules the model must learn, in context."""
    rng = random.Random(3)
    pairs = [demo.sample_pair(rng) for _ in range(3000)]
    by_src = dict(pairs)
    seen = 0
    for en, fr in by_src.items():
        if " one apple" in en and "hundred" not in en:
            assert "une pomme" in fr and "pommes" not in fr, (en, fr)
            seen += 1
        if re.search(r"\bon \w+ 1 ,|\bon 1 ", en):
            assert " le 1er " in fr, (en, fr)
            seen += 1
    assert seen > 0


def _read(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_write_demo_is_deterministic_aligned_and_disjoint(tmp_path):
    sizes = dict(n_train=1500, n_valid=100, n_test=100, n_mono=800, n_mono_valid=50)
    a = demo.write_demo(tmp_path / "a", seed=5, **sizes)
    b = demo.write_demo(tmp_path / "b", seed=5, **sizes)
    c = demo.write_demo(tmp_path / "c", seed=6, **sizes)
    assert list(a) == list(demo.DEMO_FILES)
    for name in demo.DEMO_FILES:
        assert a[name].read_bytes() == b[name].read_bytes(), f"{name}: same seed, same bytes"
    assert a["train.src"].read_bytes() != c["train.src"].read_bytes(), "another seed, other data"

    lines = {name: _read(path) for name, path in a.items()}
    for split, n in (("train", 1500), ("valid", 100), ("test", 100)):
        assert len(lines[f"{split}.src"]) == len(lines[f"{split}.tgt"]) == n
    assert len(lines["mono.train.txt"]) == 800 and len(lines["mono.valid.txt"]) == 50
    train, valid, test = (set(lines[f"{s}.src"]) for s in ("train", "valid", "test"))
    assert len(train) == 1500, "no duplicate sources within train"
    assert not (train & test) and not (train & valid) and not (valid & test)
    assert not set(lines["mono.train.txt"]) & set(lines["mono.valid.txt"])
    for name, ls in lines.items():
        assert all(line.strip() and line == line.strip() for line in ls), f"{name}: no empty lines"
    # Short sentences, as the task promises (words, not subwords).
    assert max(len(line.split()) for line in lines["train.src"] + lines["train.tgt"]) <= 20


# Every word english_number uses: zero..nineteen, the tens, hundred, thousand, million.
_EN_NUMBER_WORDS = {
    part
    for n in [*range(1000), 1000, 1_000_000]
    for word in demo.english_number(n).split()
    for part in word.split("-")
}


def _spelt_numbers(sentence: str) -> list[str]:
    """Maximal runs of English number words ('seventy-one thousand two')."""
    runs, cur = [], []
    for word in sentence.rstrip(".").split():
        if all(part in _EN_NUMBER_WORDS for part in word.split("-")):
            cur.append(word)
        elif cur:
            runs.append(" ".join(cur))
            cur = []
    return runs + ([" ".join(cur)] if cur else [])


def test_test_split_needs_generalisation():
    """Most test numbers above a thousand never occur in the training split: memorising fails."""
    splits = demo.make_splits(1, 3000, 50, 200)
    seen = {n for en, _ in splits["train"] for n in _spelt_numbers(en)}
    big = [n for en, _ in splits["test"] for n in _spelt_numbers(en) if "thousand" in n]
    assert _spelt_numbers("She sold seventy-one thousand two cups.") == ["seventy-one thousand two"]
    assert len(big) > 40
    assert sum(n not in seen for n in big) > 0.9 * len(big)


def test_write_demo_rejects_bad_sizes(tmp_path):
    with pytest.raises(TfcliError, match="n_train"):
        demo.write_demo(tmp_path, n_train=0)
