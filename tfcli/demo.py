"""Deterministic demo corpora, generated here (no downloads, no third-party text).

The parallel task is English -> French sentences about quantities, prices, distances, ages and
dates, with the numbers (0 to 1,000,000) spelt out in words. A small Transformer learns it in a
few CPU minutes, and only by generalising: French number words are not a word-for-word copy of
English ones (71 = soixante et onze, 80 = quatre-vingts, 200 = deux cents but 200,000 = deux cent
mille), the numeral agrees with the noun's gender (twenty-one apples = vingt et une pommes), and
most test sentences carry numbers that the training split never shows. Splits are disjoint by
source sentence.

The monolingual text (for masked-LM pretraining) mixes English and French sentences of the same
family with counting runs ("forty-one , forty-two , forty-three"), so a masked token is usually
predictable from its context: a template word, the noun's article, the next number in a run.

Sentences carry no final period and commas are split off ("The party is on May 4 , 1987"), so
every word is a clean unit for the subword vocabulary and for a <mask> (a metaspace tokenizer
would otherwise learn 'cups.' and 'cups' apart), while hypotheses do not end in a tokenized
' .' (which sacreBLEU reports as undetokenized output).
"""

from __future__ import annotations

import calendar
import random
from collections.abc import Callable
from pathlib import Path

from tfcli.errors import TfcliError
from tfcli.textio import atomic_write_text, undo_on_error

# --- number words ---------------------------------------------------------------------------

_EN_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

_FR_UNITS = (
    "zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze "
    "seize dix-sept dix-huit dix-neuf"
).split()
_FR_TENS = "_ _ vingt trente quarante cinquante soixante".split()


def _en_below_1000(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [f"{_EN_UNITS[hundreds]} hundred"] if hundreds else []
    if rest >= 20:
        tens, unit = divmod(rest, 10)
        words.append(_EN_TENS[tens] + (f"-{_EN_UNITS[unit]}" if unit else ""))
    elif rest or not hundreds:
        words.append(_EN_UNITS[rest])
    return " ".join(words)


def english_number(n: int) -> str:
    """0..1,000,000 in American English words: 101 = 'one hundred one', 21 = 'twenty-one'."""
    if not 0 <= n <= 1_000_000:
        raise ValueError(f"english_number: {n} is outside 0..1000000")
    if n == 1_000_000:
        return "one million"
    thousands, rest = divmod(n, 1000)
    words = [f"{_en_below_1000(thousands)} thousand"] if thousands else []
    if rest or not thousands:
        words.append(_en_below_1000(rest))
    return " ".join(words)


def _fr_below_100(n: int, *, final: bool, feminine: bool) -> str:
    """`final`: nothing follows (quatre-vingts keeps its s); `feminine`: a final 'un' is 'une'."""
    un = "une" if feminine else "un"
    if n < 20:
        return un if n == 1 else _FR_UNITS[n]
    if n < 70:
        tens, unit = divmod(n, 10)
        if unit == 0:
            return _FR_TENS[tens]
        return f"{_FR_TENS[tens]} et {un}" if unit == 1 else f"{_FR_TENS[tens]}-{_FR_UNITS[unit]}"
    if n < 80:  # 70-79 count on from sixty: soixante-dix, soixante et onze, soixante-douze
        return "soixante et onze" if n == 71 else f"soixante-{_FR_UNITS[n - 60]}"
    if n == 80:
        return "quatre-vingts" if final else "quatre-vingt"
    # 81-99: quatre-vingt-un (no 'et'), quatre-vingt-dix, quatre-vingt-onze
    return "quatre-vingt-" + (un if n == 81 else _FR_UNITS[n - 80])


def _fr_below_1000(n: int, *, final: bool, feminine: bool) -> str:
    hundreds, rest = divmod(n, 100)
    if hundreds == 0:
        return _fr_below_100(rest, final=final, feminine=feminine)
    # 'cent' takes an s when multiplied and last: deux cents, but deux cent un, deux cent mille
    head = (
        "cent"
        if hundreds == 1
        else _FR_UNITS[hundreds] + (" cents" if not rest and final else " cent")
    )
    return head if not rest else f"{head} {_fr_below_100(rest, final=final, feminine=feminine)}"


def french_number(n: int, *, feminine: bool = False) -> str:
    """0..1,000,000 in French words, traditional spelling (hyphens below 100 only).

    Rules: 'et' in 21, 31, ... 71 but not 81 or 91; quatre-vingts and multiplied cents take an s
    only when nothing follows; mille never varies and 1000 is 'mille', not 'un mille';
    `feminine` agrees a final 'un' with a feminine noun (vingt et une pommes), while the 'un'
    before mille stays masculine (vingt et un mille pommes).
    """
    if not 0 <= n <= 1_000_000:
        raise ValueError(f"french_number: {n} is outside 0..1000000")
    if n == 1_000_000:
        return "un million"
    thousands, rest = divmod(n, 1000)
    if thousands == 0:
        return _fr_below_1000(rest, final=True, feminine=feminine)
    head = (
        "mille"
        if thousands == 1
        else _fr_below_1000(thousands, final=False, feminine=False) + " mille"
    )
    return head if not rest else f"{head} {_fr_below_1000(rest, final=True, feminine=feminine)}"


# --- vocabulary -----------------------------------------------------------------------------

# (English singular, English plural, French singular, French plural, feminine)
_NOUNS = [
    ("apple", "apples", "pomme", "pommes", True),
    ("book", "books", "livre", "livres", False),
    ("car", "cars", "voiture", "voitures", True),
    ("bird", "birds", "oiseau", "oiseaux", False),
    ("house", "houses", "maison", "maisons", True),
    ("tree", "trees", "arbre", "arbres", False),
    ("chair", "chairs", "chaise", "chaises", True),
    ("letter", "letters", "lettre", "lettres", True),
    ("coin", "coins", "pièce", "pièces", True),
    ("boat", "boats", "bateau", "bateaux", False),
    ("horse", "horses", "cheval", "chevaux", False),
    ("cup", "cups", "tasse", "tasses", True),
    ("stone", "stones", "pierre", "pierres", True),
    ("ticket", "tickets", "billet", "billets", False),
    ("flower", "flowers", "fleur", "fleurs", True),
    ("egg", "eggs", "œuf", "œufs", False),
    ("key", "keys", "clé", "clés", True),
    ("bottle", "bottles", "bouteille", "bouteilles", True),
    ("sheep", "sheep", "mouton", "moutons", False),
    ("pencil", "pencils", "crayon", "crayons", False),
]
_PLACES = [
    ("garden", "le jardin"), ("box", "la boîte"), ("house", "la maison"), ("room", "la chambre"),
    ("kitchen", "la cuisine"), ("market", "le marché"), ("village", "le village"),
    ("city", "la ville"), ("school", "l'école"), ("shop", "le magasin"), ("library", "la bibliothèque"),
]  # fmt: skip
# (English subject, French subject) for "X have/has ...": the verb agrees with the subject.
_HAVE = [
    ("I have", "J'ai"),
    ("We have", "Nous avons"),
    ("She has", "Elle a"),
    ("They have", "Ils ont"),
]
_QUANTITY = [  # {q}: the number and noun; {p}: a place
    ("{have} {q}.", "{avoir} {q}."),
    ("We bought {q}.", "Nous avons acheté {q}."),
    ("She sold {q}.", "Elle a vendu {q}."),
    ("He counted {q}.", "Il a compté {q}."),
    ("You will find {q} in the {p}.", "Vous trouverez {q} dans {p}."),
    ("There {be} {q} in the {p}.", "Il y a {q} dans {p}."),
    ("The {p_en} has {q}.", "{P} a {q}."),
]
# (English singular, plural, French singular, plural) for prices and distances
_UNITS = [("dollar", "dollars", "dollar", "dollars"), ("euro", "euros", "euro", "euros")]
_THINGS = [("The book", "Le livre"), ("The house", "La maison"), ("This car", "Cette voiture"),
           ("The ticket", "Le billet"), ("That horse", "Ce cheval")]  # fmt: skip
_PEOPLE = [("My grandmother", "Ma grand-mère"), ("My father", "Mon père"), ("Our neighbour", "Notre voisin"),
           ("His sister", "Sa sœur"), ("The teacher", "Le professeur"), ("Her brother", "Son frère")]  # fmt: skip
_OLD_THINGS = [("The church", "L'église"), ("The bridge", "Le pont"), ("This tree", "Cet arbre"),
               ("The castle", "Le château")]  # fmt: skip
_MONTHS_EN = (
    "January February March April May June July August September October November December".split()
)
_MONTHS_FR = (
    "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split()
)
_EVENTS = [("The meeting", "La réunion"), ("The concert", "Le concert"), ("The wedding", "Le mariage"),
           ("Her birthday", "Son anniversaire"), ("The exam", "L'examen"), ("The party", "La fête")]  # fmt: skip
_TENSES = [("is", "est"), ("was", "était"), ("will be", "sera")]

# --- sentences ------------------------------------------------------------------------------

# Magnitude buckets (low, high inclusive, weight): small numbers are common, every size appears.
_BUCKETS = [(0, 20, 0.14), (21, 99, 0.22), (100, 999, 0.2), (1000, 9999, 0.16),
            (10_000, 99_999, 0.13), (100_000, 999_999, 0.14), (1_000_000, 1_000_000, 0.01)]  # fmt: skip


def sample_number(rng: random.Random) -> int:
    """A number in 0..1,000,000, log-uniform-ish across magnitudes."""
    low, high, _ = rng.choices(_BUCKETS, weights=[b[2] for b in _BUCKETS])[0]
    return rng.randint(low, high)


def _counted(n: int, noun: tuple) -> tuple[str, str]:
    """'twenty-one apples' / 'vingt et une pommes'; French zero takes the singular, and
    'million' is a noun that needs 'de' (un million de pommes, un million d'œufs)."""
    en_sg, en_pl, fr_sg, fr_pl, fem = noun
    en = f"{english_number(n)} {en_sg if n == 1 else en_pl}"
    fr_noun = fr_sg if n in (0, 1) else fr_pl
    if n == 1_000_000:
        fr_noun = ("d'" if fr_noun[0] in "aeiouéœ" else "de ") + fr_noun
    return en, f"{french_number(n, feminine=fem)} {fr_noun}"


def _quantity(rng: random.Random) -> tuple[str, str]:
    n = sample_number(rng)
    q_en, q_fr = _counted(n, rng.choice(_NOUNS))
    have_en, have_fr = rng.choice(_HAVE)
    place_en, place_fr = rng.choice(_PLACES)
    en, fr = rng.choice(_QUANTITY)
    en = en.format(have=have_en, q=q_en, p=place_en, p_en=place_en, be="is" if n == 1 else "are")
    fr = fr.format(avoir=have_fr, q=q_fr, p=place_fr, P=place_fr[0].upper() + place_fr[1:])
    return en, fr


def _measure(rng: random.Random) -> tuple[str, str]:
    n = sample_number(rng)
    if rng.random() < 0.5:
        unit = rng.choice(_UNITS)
        price_en, price_fr = _counted(n, (*unit, False))
        thing_en, thing_fr = rng.choice(_THINGS)
        return f"{thing_en} costs {price_en}.", f"{thing_fr} coûte {price_fr}."
    km_en, km_fr = _counted(n, ("kilometre", "kilometres", "kilomètre", "kilomètres", False))
    place_en, place_fr = rng.choice(_PLACES[5:])
    return f"The {place_en} is {km_en} away.", f"{place_fr[0].upper()}{place_fr[1:]} est à {km_fr}."


def _age(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.7:
        n, (who_en, who_fr) = rng.randint(1, 109), rng.choice(_PEOPLE)
    else:
        n, (who_en, who_fr) = rng.randint(1, 2000), rng.choice(_OLD_THINGS)
    age_en, age_fr = _counted(n, ("year", "years", "an", "ans", False))
    return f"{who_en} is {age_en} old.", f"{who_fr} a {age_fr}."


def _date(rng: random.Random) -> tuple[str, str]:
    year = rng.randint(1000, 2099)
    month = rng.randrange(12)
    day = rng.randint(1, calendar.monthrange(year, month + 1)[1])  # real dates: no 29 Feb 1900
    event_en, event_fr = rng.choice(_EVENTS)
    tense_en, tense_fr = rng.choice(_TENSES)
    # Two English orders (US and UK) map to the one French order; the 1st is '1er' in French.
    when_en = (
        f"{_MONTHS_EN[month]} {day}, {year}"
        if rng.random() < 0.5
        else f"{day} {_MONTHS_EN[month]} {year}"
    )
    when_fr = f"{'1er' if day == 1 else day} {_MONTHS_FR[month]} {year}"
    return f"{event_en} {tense_en} on {when_en}.", f"{event_fr} {tense_fr} le {when_fr}."


_KINDS: list[tuple[Callable[[random.Random], tuple[str, str]], float]] = [
    (_quantity, 0.55),
    (_measure, 0.15),
    (_age, 0.12),
    (_date, 0.18),
]


def _plain(sentence: str) -> str:
    """'On May 4, 1987.' -> 'On May 4 , 1987': commas as words, no final period."""
    return sentence.replace(", ", " , ").removesuffix(".")


def sample_pair(rng: random.Random) -> tuple[str, str]:
    """One (English, French) sentence pair, in the plain form described above."""
    make = rng.choices([k for k, _ in _KINDS], weights=[w for _, w in _KINDS])[0]
    en, fr = make(rng)
    return _plain(en), _plain(fr)


def _counting_line(rng: random.Random) -> str:
    """A run of 4-6 consecutive numbers in one language: each is predictable from its
    neighbours, which is what makes masked-token accuracy climb far above the unigram baseline."""
    length = rng.randint(4, 6)
    start = rng.randint(0, 10 ** rng.randint(2, 4) - length)  # short words: below 10,000
    say = english_number if rng.random() < 0.5 else french_number
    return " , ".join(say(start + i) for i in range(length))


def mono_line(rng: random.Random) -> str:
    """One monolingual line: an English or French demo sentence, or a counting run."""
    r = rng.random()
    if r < 0.3:
        return _counting_line(rng)
    en, fr = sample_pair(rng)
    return en if r < 0.65 else fr


# --- splits and files -----------------------------------------------------------------------


def _unique(make: Callable[[], tuple[str, ...]], n: int, taken: set[str]) -> list[tuple[str, ...]]:
    """`n` items whose first field is neither in `taken` nor repeated; adds them to `taken`."""
    items: list[tuple[str, ...]] = []
    attempts = 0
    while len(items) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise TfcliError(
                f"demo data: cannot draw {n} distinct sentences; ask for fewer (--train)"
            )
        item = make()
        if item[0] not in taken:
            taken.add(item[0])
            items.append(item)
    return items


def make_splits(
    seed: int, n_train: int, n_valid: int, n_test: int
) -> dict[str, list[tuple[str, str]]]:
    """{'train'|'valid'|'test': [(en, fr)]}. Held-out splits are drawn first (each from its own
    seeded stream) and train skips their source sentences, so no source appears in two splits."""
    taken: set[str] = set()
    splits = {}
    for name, n in (("test", n_test), ("valid", n_valid), ("train", n_train)):
        rng = random.Random(f"tfcli-demo-{seed}-{name}")
        splits[name] = _unique(lambda rng=rng: sample_pair(rng), n, taken)
    return splits


def make_mono(seed: int, n_train: int, n_valid: int) -> dict[str, list[str]]:
    """{'train'|'valid': [line]}, disjoint, from streams independent of the parallel splits."""
    taken: set[str] = set()
    out = {}
    for name, n in (("valid", n_valid), ("train", n_train)):
        rng = random.Random(f"tfcli-demo-{seed}-mono-{name}")
        out[name] = [line for (line,) in _unique(lambda rng=rng: (mono_line(rng),), n, taken)]
    return out


DEFAULT_SIZES = {
    "n_train": 30000,
    "n_valid": 500,
    "n_test": 500,
    "n_mono": 30000,
    "n_mono_valid": 500,
}
SMALL_SIZES = {"n_train": 3000, "n_valid": 200, "n_test": 200, "n_mono": 3000, "n_mono_valid": 200}
DEMO_FILES = (
    "train.src", "train.tgt", "valid.src", "valid.tgt", "test.src", "test.tgt",
    "mono.train.txt", "mono.valid.txt",
)  # fmt: skip


def write_demo(
    out_dir: Path,
    seed: int = 1,
    n_train: int = DEFAULT_SIZES["n_train"],
    n_valid: int = DEFAULT_SIZES["n_valid"],
    n_test: int = DEFAULT_SIZES["n_test"],
    n_mono: int = DEFAULT_SIZES["n_mono"],
    n_mono_valid: int = DEFAULT_SIZES["n_mono_valid"],
) -> dict[str, Path]:
    """Write the demo corpora (UTF-8, one sentence per line, each file atomically).

    Returns {file name: path} for DEMO_FILES: `<split>.src` English, `<split>.tgt` French
    (line-aligned), `mono.train.txt` / `mono.valid.txt` mixed monolingual text. The same seed
    and sizes always give byte-identical files.
    """
    for name, n in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test),
                    ("n_mono", n_mono), ("n_mono_valid", n_mono_valid)):  # fmt: skip
        if n < 1:
            raise TfcliError(f"demo data: {name} must be >= 1, got {n}")
    splits = make_splits(seed, n_train, n_valid, n_test)
    mono = make_mono(seed, n_mono, n_mono_valid)
    texts = {}
    for split, pairs in splits.items():
        texts[f"{split}.src"] = [en for en, _ in pairs]
        texts[f"{split}.tgt"] = [fr for _, fr in pairs]
    texts["mono.train.txt"] = mono["train"]
    texts["mono.valid.txt"] = mono["valid"]
    paths = {name: Path(out_dir) / name for name in DEMO_FILES}
    with undo_on_error(*paths.values()):  # all the corpora, or none of them
        for name, path in paths.items():
            atomic_write_text(path, "\n".join(texts[name]) + "\n", "demo corpus")
    return paths
