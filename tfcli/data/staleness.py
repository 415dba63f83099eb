"""When an encoded split must be re-encoded: what it was made from, recorded in its meta.json.

`tfcli.data.encoding` writes into each split's meta.json the tokenizer(s) it used (their sha256,
see `tfcli.tokenizer.staleness.file_sha256`), a fingerprint of every input file
(`input_fingerprints`), the length filters and the BPE-dropout settings. `reencode_reason`
compares that record with what encoding would see now. Corpus weights are recorded too but
never make a split stale: they only steer sampling, so `encoding.reweigh` rewrites them in
meta.json without touching the ids. (The tokenizer's own record, in tokenizer.meta.json, keeps mtimes in
integer nanoseconds; a split's keeps float seconds. Both formats are on disk in existing runs,
so each keeps its own.)
"""

from __future__ import annotations

from pathlib import Path

from tfcli.data.split import open_split
from tfcli.errors import DataError


def input_fingerprints(files: dict[str, list[Path]]) -> list[dict]:
    """[{"side", "path" (absolute), "size", "mtime"}] per input file, in order."""
    out = []
    for side, paths in files.items():
        for p in paths:
            st = Path(p).stat()
            out.append(
                {
                    "side": side,
                    "path": str(Path(p).resolve()),
                    "size": st.st_size,
                    "mtime": st.st_mtime,
                }
            )
    return out


def reencode_reason(
    out: Path,
    kind: str,
    files: dict[str, list[Path]],
    shas: dict[str, str],
    filters: dict,
    dropout: dict | None = None,
) -> str | None:
    """Why the split at `out` must be (re-)encoded from `files` with the tokenizers whose
    sha256 are `shas` ({side: sha}), the length `filters` and the BPE-dropout settings
    `dropout` ({"p", "copies", "seed"}, None = none); None when it is current."""
    if not out.exists():
        return "not encoded yet"
    try:
        meta = open_split(out).meta
    except DataError:
        return "the encoded files are incomplete or corrupt"
    if meta.get("kind") != kind:
        return f"it holds {meta.get('kind')} data"
    if meta.get("tokenizer_sha256") != shas:
        return "the tokenizer changed"
    if meta.get("inputs") != input_fingerprints(files):
        return "the input files changed"
    if meta.get("filters") != filters:
        return "the length filters changed"
    recorded = meta.get("dropout")
    if (recorded and {k: recorded.get(k) for k in ("p", "copies", "seed")}) != (dropout or None):
        return "the BPE-dropout settings changed"
    return None
