"""A full disk, for real: every command that writes, pointed at a nearly full tmpfs.

Each must stop with one line (`disk full while writing ...` or the permission/space error it
meets first), a non-zero exit, and leave the filesystem as it found it: no temp file, no half a
file, no empty directory. Needs root to mount a tmpfs (CI and the dev machines run as root);
skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_bad_input import world  # noqa: F401  (the module-scoped artefacts fixture)

from tfcli.cli import main

FREE = 2 * 1024  # bytes left free: more than a directory entry, less than any artefact


@pytest.fixture
def full_disk(tmp_path):
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        filler = mount / "filler"
        with open(filler, "wb") as f:
            f.write(b"\0" * (shutil.disk_usage(mount).free - FREE))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _entries(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


CASES = [
    ("tokenize", ["tokenize", "train.src", "train.tgt", "--vocab-size", "80", "-o", "{out}/tok.json"]),
    ("encode", ["encode", "--src", "train.src", "--tgt", "train.tgt", "--tokenizer", "tok.json", "-o", "{out}/split"]),
    ("decode", ["decode", "seq2seq", "-i", "train.src", "-o", "{out}/hyp.txt", "--mode", "greedy"]),
    ("average", ["average", "run", "--last", "2", "-o", "{out}/avg.safetensors"]),
    ("demo-data", ["demo-data", "{out}/demo"]),
    ("train", ["train", "ok.yaml", "--run-dir", "{out}/run", "--set", "train.eval_every=1"]),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("name", "argv"), CASES, ids=[c[0] for c in CASES])
def test_a_full_disk_is_one_line_and_leaves_nothing(
    world,  # noqa: F811
    full_disk,
    monkeypatch,
    capsys,
    name,
    argv,
):
    monkeypatch.chdir(world)
    monkeypatch.delenv("TFCLI_DEBUG", raising=False)
    monkeypatch.setenv("TFCLI_QUIET", "1")
    before = _entries(full_disk)
    with pytest.raises(SystemExit) as exit_:
        main([a.format(out=full_disk) for a in argv])
    err = capsys.readouterr().err
    assert exit_.value.code not in (0, None), err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and "disk full while writing" in lines[-1], lines
    assert "free" in lines[-1] and str(full_disk) in lines[-1]
    assert _entries(full_disk) == before, "a failed write left files or directories behind"
