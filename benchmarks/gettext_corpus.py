"""Real English -> X parallel text from the compiled gettext catalogs every Debian machine carries.

`/usr/share/locale/<lang>/LC_MESSAGES/*.mo` hold the human translations of the messages of the
installed programs (apt, bash, coreutils, git, glib, ...): on a typical server ~80 French
catalogs, ~77k message pairs. No download needed, and the text is real, if domain-specific
(software messages: short, imperative, full of format strings).

The .mo reader is written from the GNU format (gettext manual, "The Format of GNU MO Files"):

    offset 0   magic 0x950412de, in the writer's byte order (so it reads 0xde120495 if swapped)
    offset 4   file format revision (major in the high 16 bits: 0 or 1)
    offset 8   N, number of strings
    offset 12  O, offset of the table of original strings
    offset 16  T, offset of the table of translated strings
    (then the hash table size and offset, which a sequential reader does not need)

Each table holds N (length, offset) pairs of uint32; a string is `length` bytes at `offset`
(a NUL follows it). A msgid "ctx\\x04text" carries a context; "one\\x00many" is a plural entry
whose msgstr holds the forms separated by NULs. The entry with an empty msgid is the header,
whose Content-Type names the charset.

The data depends on the packages installed on the machine: `build_corpus` returns (and writes to
corpus.json) the catalogs it read and a sha256 over the files it wrote, so a result names exactly
the data it was measured on.

    python benchmarks/gettext_corpus.py /tmp/gettext-fr --lang fr
"""

from __future__ import annotations

import argparse
import codecs
import hashlib
import json
import re
import struct
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tfcli.errors import DataError
from tfcli.textio import atomic_path, atomic_write_text

MAGIC = 0x950412DE
LOCALE_DIR = Path("/usr/share/locale")
SPLITS = ("train", "valid", "test")

# printf conversions (%s, %-10.3lf, %1$s, %'d, %<PRIu64>, %%), Python's %(name)s, {0} / {name}
_FORMAT = re.compile(
    r"%(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
    r"(?:<PRI[a-zA-Z0-9]+>|hh|h|ll|l|L|q|j|z|Z|t)?[diouxXeEfFgGaAcspnm%]"
    r"|%\([^)]*\)[-+ #0]*\d*(?:\.\d+)?[a-zA-Z]"
    r"|\{[^{}\s]*\}"
)


@dataclass(frozen=True)
class MoCatalog:
    """A parsed .mo file: raw (msgid, msgstr) byte strings in table order, header included."""

    byteorder: str  # "little" | "big"
    revision: int
    entries: list[tuple[bytes, bytes]]

    def charset(self) -> str:
        """The header's Content-Type charset, if Python knows it; else UTF-8 (gettext's norm)."""
        header = next((s for k, s in self.entries if k == b""), b"")
        m = re.search(rb"charset=([A-Za-z0-9_.:-]+)", header)
        if m:
            name = m.group(1).decode("ascii")
            try:
                return codecs.lookup(name).name
            except LookupError:  # "CHARSET" placeholder of an unfilled template
                pass
        return "utf-8"


def parse_mo(data: bytes, where: str = "<bytes>") -> MoCatalog:
    """Parse the bytes of a GNU .mo file. Raises DataError naming `where` if they are not one."""

    def bad(what: str) -> DataError:
        return DataError(f"{where}: not a GNU .mo file ({what}); check the file or skip it")

    if len(data) < 20:
        raise bad(f"{len(data)} bytes, shorter than the 20-byte header")
    # the writer's byte order is whichever reads the magic back
    fmt = next((f for f in "<>" if struct.unpack_from(f + "I", data)[0] == MAGIC), None)
    if fmt is None:
        raise bad(f"magic {data[:4].hex()}")
    revision, n, orig, trans = struct.unpack_from(fmt + "4I", data, 4)
    if revision >> 16 not in (0, 1):
        raise bad(f"unsupported major revision {revision >> 16}")
    for name, table in (("original", orig), ("translation", trans)):
        if table + 8 * n > len(data):
            raise bad(f"{name} table at {table} with {n} entries runs past the end")

    def string(table: int, i: int) -> bytes:
        length, offset = struct.unpack_from(fmt + "2I", data, table + 8 * i)
        if offset + length > len(data):
            raise bad(f"string {i} at {offset}+{length} runs past the end ({len(data)} bytes)")
        return data[offset : offset + length]

    entries = [(string(orig, i), string(trans, i)) for i in range(n)]
    return MoCatalog("little" if fmt == "<" else "big", revision, entries)


def read_mo(path: Path) -> MoCatalog:
    """parse_mo of a file."""
    return parse_mo(Path(path).read_bytes(), str(path))


def messages(cat: MoCatalog, stats: Counter | None = None) -> Iterator[tuple[str, str]]:
    """(msgid, msgstr) text of the catalog's translated singular messages, in table order.

    Skips the header and untranslated entries; keeps the text after a context's \\x04 and the
    singular / first plural form. Entries that do not decode in the catalog's charset are
    skipped and counted in `stats["undecodable"]`.
    """
    stats = Counter() if stats is None else stats
    charset = cat.charset()
    for raw_id, raw_str in cat.entries:
        if raw_id == b"":
            continue  # the header (metadata, not a message)
        raw_id = raw_id.split(b"\x04", 1)[-1].split(b"\x00", 1)[0]
        raw_str = raw_str.split(b"\x00", 1)[0]
        if not raw_id or not raw_str:
            stats["untranslated"] += 1
            continue
        try:
            yield raw_id.decode(charset), raw_str.decode(charset)
        except UnicodeDecodeError:
            stats["undecodable"] += 1


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in _FORMAT.sub(" ", text))


def clean_pairs(
    src: str, tgt: str, *, min_words: int = 2, max_words: int = 60, stats: Counter | None = None
) -> list[tuple[str, str]]:
    """The sentence pairs one message gives after cleaning (possibly none); reasons in `stats`.

    Multi-line messages are split line by line when both sides have the same number of
    non-empty lines (the lines then correspond); otherwise the whole message is one pair.
    Whitespace is collapsed. Dropped: fewer than `min_words` or more than `max_words` words on
    either side, no letters outside format directives on either side, target == source.
    """
    stats = Counter() if stats is None else stats
    s_lines = [x for x in src.splitlines() if x.strip()]
    t_lines = [x for x in tgt.splitlines() if x.strip()]
    if len(s_lines) > 1 and len(s_lines) == len(t_lines):
        candidates = list(zip(s_lines, t_lines, strict=True))
        stats["split_lines"] += 1
    else:
        candidates = [(src, tgt)]
    out = []
    for s, t in candidates:
        s, t = " ".join(s.split()), " ".join(t.split())
        ws, wt = len(s.split()), len(t.split())
        if min(ws, wt) < min_words:
            stats["too_short"] += 1
        elif max(ws, wt) > max_words:
            stats["too_long"] += 1
        elif not (_has_letters(s) and _has_letters(t)):
            stats["no_letters"] += 1
        elif s == t:
            stats["untranslated_copy"] += 1
        else:
            out.append((s, t))
    return out


def dedup_key(src: str) -> str:
    """Sources that differ only in case, punctuation or spacing are the same message."""
    return " ".join(re.findall(r"\w+", src.casefold()))


def split_pairs(
    pairs: list[tuple[str, str]], valid_size: int, test_size: int
) -> dict[str, list[tuple[str, str]]]:
    """Deduplicate by `dedup_key(source)` (first kept) and split by its sha256.

    Pairs sorted by the hash: the first `test_size` are the test split, the next `valid_size`
    the validation split, the rest train (in hash order, so packages are mixed). Independent of
    the order of `pairs` except for which of several duplicates is kept; near-duplicate
    sources never straddle two splits.
    """
    seen: dict[str, tuple[str, str]] = {}
    for s, t in pairs:
        seen.setdefault(dedup_key(s), (s, t))
    ranked = sorted(seen.items(), key=lambda kv: hashlib.sha256(kv[0].encode()).digest())
    need = valid_size + test_size + 1
    if len(ranked) < need:
        raise DataError(
            f"only {len(ranked)} distinct pairs, need at least {need} for valid {valid_size} "
            f"+ test {test_size} + train; install more translated packages or shrink the splits"
        )
    kept = [pair for _, pair in ranked]
    return {
        "test": kept[:test_size],
        "valid": kept[test_size : test_size + valid_size],
        "train": kept[test_size + valid_size :],
    }


def build_corpus(
    out_dir: Path,
    lang: str = "fr",
    *,
    locale_dir: Path = LOCALE_DIR,
    valid_size: int = 500,
    test_size: int = 1000,
    min_words: int = 2,
    max_words: int = 60,
    max_train: int = 0,
) -> dict:
    """Write OUT/{train,valid,test}.{en,LANG} (+ corpus.json) from the machine's LANG catalogs.

    Catalogs are read in file-name order from `locale_dir/LANG/LC_MESSAGES/*.mo`; files that are
    not valid .mo are skipped and listed. `max_train` > 0 keeps only that many training pairs
    (smoke tests). Returns the manifest written to corpus.json: catalogs (name, bytes, sha256,
    pairs), counts per cleaning stage, pairs and words per split, and `sha256`, a digest of
    the six text files in a fixed order. Raises DataError when there are no catalogs.
    """
    out_dir = Path(out_dir)
    files = sorted((Path(locale_dir) / lang / "LC_MESSAGES").glob("*.mo"))
    if not files:
        raise DataError(
            f"no .mo catalogs under {Path(locale_dir) / lang / 'LC_MESSAGES'}; pick a --lang "
            f"with translations installed (ls {locale_dir}) or install language packs"
        )
    stats: Counter = Counter()
    catalogs, pairs = [], []
    for path in files:
        data = path.read_bytes()
        info = {"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        try:
            cat = parse_mo(data, str(path))
        except DataError as e:
            catalogs.append({**info, "error": str(e)})
            continue
        before = len(pairs)
        for src, tgt in messages(cat, stats):
            stats["messages"] += 1
            pairs.extend(
                clean_pairs(src, tgt, min_words=min_words, max_words=max_words, stats=stats)
            )
        catalogs.append({**info, "pairs": len(pairs) - before})
    stats["clean_pairs"] = len(pairs)
    splits = split_pairs(pairs, valid_size, test_size)
    stats["duplicates"] = len(pairs) - sum(len(v) for v in splits.values())
    if max_train > 0:
        splits["train"] = splits["train"][:max_train]
    digest = hashlib.sha256()
    for split in SPLITS:
        for side, text in (("en", 0), (lang, 1)):
            body = "".join(p[text] + "\n" for p in splits[split]).encode("utf-8")
            digest.update(body)
            with atomic_path(out_dir / f"{split}.{side}") as tmp:
                tmp.write_bytes(body)
    manifest = {
        "lang": lang,
        "locale_dir": str(locale_dir),
        "catalogs": catalogs,
        "counts": dict(sorted(stats.items())),
        "splits": {
            k: {
                "pairs": len(v),
                "words_en": sum(len(s.split()) for s, _ in v),
                f"words_{lang}": sum(len(t.split()) for _, t in v),
            }
            for k, v in splits.items()
        },  # fmt: skip
        "max_train": max_train,
        "sha256": digest.hexdigest(),
    }
    atomic_write_text(out_dir / "corpus.json", json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--lang", default="fr")
    ap.add_argument("--locale-dir", type=Path, default=LOCALE_DIR)
    ap.add_argument("--valid", type=int, default=500)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--max-train", type=int, default=0, help="keep this many train pairs; 0 = all")
    args = ap.parse_args(argv)
    try:
        m = build_corpus(args.out_dir, args.lang, locale_dir=args.locale_dir,
                         valid_size=args.valid, test_size=args.test, max_train=args.max_train)  # fmt: skip
    except DataError as e:
        sys.exit(f"Error: {e}")
    summary = {k: m[k] for k in ("counts", "splits", "sha256")}
    summary["catalogs"] = len(m["catalogs"])
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
