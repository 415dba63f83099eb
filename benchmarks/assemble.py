"""Write BENCHMARKS.md: the summary (benchmarks/SUMMARY.md) followed by every area's results file.

python benchmarks/assemble.py      # after a benchmark script updated benchmarks/results/*.md
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "tokenize",
    "encode",
    "model",
    "train",
    "quality",
    "mlm",
    "decode",
    "nat",
    "export",
    "checkpoint",
    "quickstart",
    "attention",
    "variants",
    "stream",
    "serve",
    "gpu",
]


def main() -> None:
    parts = [(HERE / "SUMMARY.md").read_text(encoding="utf-8").rstrip()]
    files = {p.stem: p for p in (HERE / "results").glob("*.md")}
    for name in ORDER + sorted(set(files) - set(ORDER)):
        if name in files:
            body = files[name].read_text(encoding="utf-8").rstrip()
            # Demote headings one level so each area nests under "Details".
            body = "\n".join(
                "#" + line if line.startswith("#") else line for line in body.splitlines()
            )
            parts.append(f"<!-- from benchmarks/results/{name}.md -->\n{body}")
    (HERE.parent / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
