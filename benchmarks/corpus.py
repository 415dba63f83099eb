"""A deterministic synthetic multilingual corpus for benchmarks (no downloads, no third-party text).

Six scripts, each with its own made-up lexicon built from syllables: Latin with diacritics,
Cyrillic, Greek, CJK (no spaces between words, as in real Chinese/Japanese), Arabic (right to
left) and Devanagari (combining vowel signs). Word frequencies follow a Zipf law, sentence
lengths a log-normal law (median ~14 words), and sentences carry digits, numbers with separators,
commas, quotes, parentheses and script-specific final punctuation. One sentence per line.

The same (megabytes, seed) always gives the same bytes (pure-Python `random.Random`, whose
sequences Python keeps stable across versions).

    python benchmarks/corpus.py /tmp/corpus.txt --mb 20
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path

# Syllable inventories per script: (onsets, nuclei). A word is 1-4 syllables.
_SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    "latin": (
        list("bcdfghjklmnprstvwzß")
        + ["ch", "sh", "th", "tr", "st", "pl", "ñ", "ç", "ł", "ż", "š", "č"],
        list("aeiou") + ["á", "é", "í", "ó", "ú", "ä", "ö", "ü", "ø", "å", "ai", "ou", "ie", "ê"],
    ),
    "cyrillic": (
        list("бвгджзклмнпрстфхцчшщ"),
        list("аеиоуыэюяё") + ["ай", "ей", "ой", "ь", "ъ"],
    ),
    "greek": (list("βγδζθκλμνξπρστφχψ"), list("αεηιουωάέήίόύώ") + ["ου", "αι", "ει"]),
    "cjk": ([chr(c) for c in range(0x4E00, 0x4E00 + 2400, 3)], [""]),
    "arabic": (list("بتثجحخدذرزسشصضطظعغفقكلمنهوي"), ["", "ا", "و", "ي", "َ", "ُ", "ِ"]),
    "devanagari": (
        list("कखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह"),
        ["", "ा", "ि", "ी", "ु", "ू", "े", "ै", "ो", "ौ", "ं", "्र"],
    ),
}
# Share of lines per script, roughly the mix of a multilingual web crawl.
_WEIGHTS = {
    "latin": 0.35,
    "cyrillic": 0.15,
    "greek": 0.08,
    "cjk": 0.17,
    "arabic": 0.1,
    "devanagari": 0.15,
}
_END = {"cjk": ["。", "！", "？"], "arabic": [".", "؟", "!"], "devanagari": ["।", "?", "!"]}
_LEXICON_SIZE = 30000
_ZIPF_S = 1.07


def _lexicon(rng: random.Random, script: str) -> list[str]:
    """_LEXICON_SIZE distinct made-up words; rank 0 is the most frequent (shortest on average)."""
    onsets, nuclei = _SCRIPTS[script]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < _LEXICON_SIZE:
        # Frequent words are short (Zipf's law of abbreviation): syllables grow with the rank.
        n = rng.randint(1, 2 + min(3, len(words) // 2000))
        w = "".join(rng.choice(onsets) + rng.choice(nuclei) for _ in range(n))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def _number(rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return str(rng.randint(1, 99))
    if kind == 1:
        return str(rng.randint(1900, 2029))
    if kind == 2:
        return f"{rng.randint(1, 999)},{rng.randrange(1000):03d}"
    return f"{rng.randrange(100)}.{rng.randrange(100):02d}"


def _sentence(rng: random.Random, script: str, lex: list[str], cum: list[float]) -> str:
    n = max(1, int(rng.lognormvariate(2.6, 0.55)))  # median ~14 words
    words = rng.choices(lex, cum_weights=cum, k=n)
    for i in range(n):
        if rng.random() < 0.04:
            words[i] = _number(rng)
    if script in ("latin", "cyrillic", "greek"):
        words[0] = words[0][:1].upper() + words[0][1:]
        if n > 2 and rng.random() < 0.3:
            words[rng.randrange(1, n - 1)] += ","
        if n > 3 and rng.random() < 0.1:
            i = rng.randrange(n - 1)
            words[i], words[i + 1] = "«" + words[i], words[i + 1] + "»"
        if n > 3 and rng.random() < 0.08:
            i = rng.randrange(n - 1)
            words[i], words[i + 1] = "(" + words[i], words[i + 1] + ")"
        end = rng.choice([".", ".", ".", "?", "!", ";"])
    else:
        if script == "arabic" and n > 2 and rng.random() < 0.3:
            words[rng.randrange(1, n - 1)] += "،"
        end = rng.choice(_END[script])
    if script == "cjk":
        # Words are not separated by spaces in CJK text; numbers keep spaces around them.
        if n > 4 and rng.random() < 0.5:
            words[rng.randrange(1, n - 1)] += "，"
        return "".join(w if not w[0].isdigit() else f" {w} " for w in words).strip() + end
    return " ".join(words) + end


def generate_lines(megabytes: float, seed: int = 1234) -> Iterator[str]:
    """Yield lines (without newline) until about `megabytes` MB of UTF-8 text are produced."""
    rng = random.Random(seed)
    names = list(_WEIGHTS)
    script_cum = list(itertools.accumulate(_WEIGHTS[s] for s in names))
    lexicons = {s: _lexicon(rng, s) for s in names}
    cum = list(itertools.accumulate(r**-_ZIPF_S for r in range(1, _LEXICON_SIZE + 1)))
    budget = int(megabytes * 1_000_000)
    written = 0
    while written < budget:
        script = rng.choices(names, cum_weights=script_cum)[0]
        line = _sentence(rng, script, lexicons[script], cum)
        written += len(line.encode("utf-8")) + 1
        yield line


def write_corpus(path: Path, megabytes: float = 20.0, seed: int = 1234) -> Path:
    """Write the corpus to `path` (atomically: a temp file renamed at the end). Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        buf: list[str] = []
        for line in generate_lines(megabytes, seed):
            buf.append(line)
            if len(buf) >= 4096:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")
    os.replace(tmp, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description="Write a deterministic synthetic multilingual corpus.")
    ap.add_argument("out", type=Path, help="output text file (one sentence per line)")
    ap.add_argument(
        "--mb", type=float, default=20.0, help="size in megabytes of UTF-8 (default 20)"
    )
    ap.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    args = ap.parse_args()
    write_corpus(args.out, args.mb, args.seed)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.1f} MB, seed {args.seed})")


if __name__ == "__main__":
    main()
