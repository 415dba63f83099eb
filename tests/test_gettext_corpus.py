"""benchmarks/gettext_corpus.py: the .mo reader and the corpus builder, on .mo bytes built here."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest

from tfcli.errors import DataError

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gettext_corpus.py"
_spec = importlib.util.spec_from_file_location("gettext_corpus", _PATH)
gc = importlib.util.module_from_spec(_spec)
sys.modules["gettext_corpus"] = gc  # dataclasses look the module up while building the class
_spec.loader.exec_module(gc)

HEADER = b"Content-Type: text/plain; charset=UTF-8\n"


def make_mo(entries: list[tuple[bytes, bytes]], order: str = "<", revision: int = 0) -> bytes:
    """A GNU .mo file: 28-byte header, original table, translation table, then the strings.

    No hash table (size 0), which the format allows. Strings are NUL-terminated as msgfmt
    writes them; the tables' lengths exclude the NUL.
    """
    n = len(entries)
    orig_table, trans_table = 28, 28 + 8 * n
    offset = 28 + 16 * n
    blob, orig, trans = b"", [], []
    for which, table in ((0, orig), (1, trans)):
        for entry in entries:
            s = entry[which]
            table.append((len(s), offset + len(blob)))
            blob += s + b"\x00"
    head = struct.pack(order + "7I", 0x950412DE, revision, n, orig_table, trans_table, 0, 0)
    tables = b"".join(struct.pack(order + "2I", *e) for e in orig + trans)
    return head + tables + blob


ENTRIES = [
    (b"", HEADER),
    (b"menu\x04Open the file", b"Ouvrir le fichier"),
    (b"one file removed\x00%d files removed", "un fichier supprimé\x00%d fichiers".encode()),
    (b"Not translated here", b""),
    (b"Cannot open %s", b"Impossible d'ouvrir %s"),
]


@pytest.mark.parametrize("order", ["<", ">"])
def test_parse_both_byte_orders(order: str) -> None:
    cat = gc.parse_mo(make_mo(ENTRIES, order, revision=1))
    assert cat.byteorder == ("little" if order == "<" else "big")
    assert cat.revision == 1
    assert cat.entries == ENTRIES
    assert cat.charset() == "utf-8"


def test_messages_context_plural_header_untranslated() -> None:
    from collections import Counter

    stats = Counter()
    got = list(gc.messages(gc.parse_mo(make_mo(ENTRIES, ">")), stats))
    assert got == [
        ("Open the file", "Ouvrir le fichier"),  # context dropped
        ("one file removed", "un fichier supprimé"),  # singular and first form
        ("Cannot open %s", "Impossible d'ouvrir %s"),
    ]
    assert stats["untranslated"] == 1


def test_messages_decode_with_the_header_charset() -> None:
    entries = [(b"", b"Content-Type: text/plain; charset=ISO-8859-1\n"),
               (b"Delete the file", b"Supprimer le fichier \xe9t\xe9")]  # fmt: skip
    cat = gc.parse_mo(make_mo(entries))
    assert cat.charset() == "iso8859-1"
    assert list(gc.messages(cat)) == [("Delete the file", "Supprimer le fichier été")]


@pytest.mark.parametrize(
    "data, what",
    [
        (b"\x00" * 10, "shorter than"),
        (b"\x12\x34\x56\x78" + b"\x00" * 24, "magic"),
        (struct.pack("<7I", 0x950412DE, 2 << 16, 0, 28, 28, 0, 0), "major revision"),
        (struct.pack("<7I", 0x950412DE, 0, 5, 28, 68, 0, 0), "runs past the end"),
        (make_mo([(b"abc", b"def")])[:-6], "runs past the end"),
    ],
)
def test_corrupt_files_raise_one_clear_error(data: bytes, what: str) -> None:
    with pytest.raises(DataError, match=what) as e:
        gc.parse_mo(data, "x.mo")
    assert str(e.value).startswith("x.mo: not a GNU .mo file")


def test_clean_pairs_rules() -> None:
    from collections import Counter

    stats = Counter()
    clean = lambda s, t: gc.clean_pairs(s, t, stats=stats)  # noqa: E731
    # same number of non-empty lines: one pair per line, whitespace collapsed
    assert clean("Usage: prog FILE\n\n  copy  files\n", "Usage : prog FICHIER\ncopier  les fichiers") == [
        ("Usage: prog FILE", "Usage : prog FICHIER"), ("copy files", "copier les fichiers")]  # fmt: skip
    # different line counts: one pair
    assert clean("Show the\nhelp text", "Afficher l'aide") == [
        ("Show the help text", "Afficher l'aide")
    ]
    assert clean("Quit", "Quitter") == []  # one word
    assert clean("word " * 61, "mot " * 61) == []  # too long
    assert clean("%s: %s", "%s : %s") == []  # a pure format string
    assert clean("%-10.3lf (%1$s) {0}", "%-10.3lf (%1$s) {0} ok") == []  # no letters in source
    assert clean("GNU General Public License", "GNU General Public License") == []  # a copy
    assert (stats["too_short"], stats["too_long"], stats["no_letters"]) == (1, 1, 2)
    assert stats["untranslated_copy"] == 1 and stats["split_lines"] == 1


def _pairs(n: int) -> list[tuple[str, str]]:
    return [(f"message number {i} here", f"message numéro {i} ici") for i in range(n)]


def test_split_sizes_dedup_and_order_independence() -> None:
    pairs = _pairs(40) + [("Message number 3 here!", "doublon")]  # near-duplicate of #3
    a = gc.split_pairs(pairs, valid_size=5, test_size=10)
    assert [len(a[k]) for k in ("train", "valid", "test")] == [25, 5, 10]
    assert ("Message number 3 here!", "doublon") not in sum(a.values(), [])  # first one kept
    b = gc.split_pairs(list(reversed(_pairs(40))), valid_size=5, test_size=10)
    assert {k: sorted(v) for k, v in a.items()} == {k: sorted(v) for k, v in b.items()}
    assert a == b  # hash order, whatever the input order
    with pytest.raises(DataError, match="only 40 distinct pairs"):
        gc.split_pairs(_pairs(40), valid_size=30, test_size=10)


def _locale(tmp_path: Path, files: dict[str, bytes]) -> Path:
    d = tmp_path / "locale" / "xx" / "LC_MESSAGES"
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return tmp_path / "locale"


def test_build_corpus_is_deterministic(tmp_path: Path) -> None:
    pairs = [(s.encode(), t.encode()) for s, t in _pairs(60)]
    files = {
        "a.mo": make_mo([(b"", HEADER), *pairs[:30]], "<"),
        "b.mo": make_mo([(b"", HEADER), *pairs[30:]], ">"),
        "broken.mo": b"not a catalog at all",
    }
    locale = _locale(tmp_path, files)
    kw = dict(locale_dir=locale, valid_size=5, test_size=10)
    m1 = gc.build_corpus(tmp_path / "c1", "xx", **kw)
    m2 = gc.build_corpus(tmp_path / "c2", "xx", **kw)
    assert m1["sha256"] == m2["sha256"]
    for name in ("train.en", "train.xx", "valid.en", "valid.xx", "test.en", "test.xx"):
        assert (tmp_path / "c1" / name).read_bytes() == (tmp_path / "c2" / name).read_bytes()
    assert m1["splits"]["train"]["pairs"] == 45 and m1["splits"]["test"]["pairs"] == 10
    src = (tmp_path / "c1" / "test.en").read_text().splitlines()
    tgt = (tmp_path / "c1" / "test.xx").read_text().splitlines()
    assert all(s.split()[2] == t.split()[2] for s, t in zip(src, tgt, strict=True))  # aligned
    by_name = {c["name"]: c for c in m1["catalogs"]}
    assert by_name["a.mo"]["pairs"] == 30 and "not a GNU .mo file" in by_name["broken.mo"]["error"]
    assert json.loads((tmp_path / "c1" / "corpus.json").read_text())["sha256"] == m1["sha256"]
    # a smoke-test cap changes the train split only, and the digest says so
    m3 = gc.build_corpus(tmp_path / "c3", "xx", max_train=7, **kw)
    assert m3["splits"]["train"]["pairs"] == 7 and m3["sha256"] != m1["sha256"]
    assert (tmp_path / "c3" / "test.en").read_bytes() == (tmp_path / "c1" / "test.en").read_bytes()
    assert not list((tmp_path / "c1").glob(".*.tmp"))  # atomic writes left no temp file


def test_build_corpus_without_catalogs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no .mo catalogs"):
        gc.build_corpus(tmp_path / "out", "zz", locale_dir=tmp_path)
