"""The README's tutorial runs verbatim (scaled down only where a flag allows), so the
documentation and the behaviour cannot part."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Scale-downs applied to the README's commands: fewer updates and a smaller demo corpus. Each one
# only changes a number that a flag already carries (or adds a size flag), never a command.
SCALE = [
    (re.compile(r"--max-steps \d+"), "--max-steps 4"),
    (re.compile(r"train\.eval_every=\d+"), "train.eval_every=2"),
    (re.compile(r"^tfcli demo-data (\S+)$"), r"tfcli demo-data \1 --size small"),
    (
        re.compile(r"^(tfcli (?:train|pretrain-mlm) .*)$"),
        r"\1 --set train.eval_max_sentences=20 --set model.encoder_layers=1"
        r" --set model.decoder_layers=1 --set model.d_ff=256",
    ),
]


def tutorial_commands() -> list[str]:
    """Every command in the bash blocks of the README's tutorial section, continuations joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Tutorial", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def scaled(command: str) -> str:
    for pattern, repl in SCALE:
        command = pattern.sub(repl, command)
    return command


def test_tutorial_is_extracted():
    commands = tutorial_commands()
    verbs = {c.split()[1] for c in commands if c.startswith("tfcli ")}
    for verb in (
        "demo-data",
        "tokenize",
        "encode",
        "train",
        "inspect",
        "average",
        "decode",
        "pretrain-mlm",
        "score",
        "evaluate",
    ):
        assert verb in verbs, f"the tutorial shows `tfcli {verb}`"


@pytest.mark.slow
def test_readme_tutorial_runs_verbatim(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TFCLI_QUIET": "1",
        "OMP_NUM_THREADS": "2",
    }
    encoded = None  # the train split as the tutorial's `tfcli encode` wrote it
    for command in tutorial_commands():
        run = scaled(command)
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", run],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, f"README command failed: {run}\n{proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr
        if command.startswith("tfcli encode"):
            encoded = (tmp_path / "runs/my/data/train/meta.json").read_text()
    # the train step found the encoded split up to date (a re-encode rewrites meta.json)
    assert encoded == (tmp_path / "runs/my/data/train/meta.json").read_text()
    assert (tmp_path / "runs/my/test.scores.jsonl").is_file()
    assert (tmp_path / "runs/my-tuned/data/train/src.dropout-0.bin").is_file()
    assert (tmp_path / "runs/my/test.hyp").is_file()
    assert (tmp_path / "runs/my/averaged.safetensors").is_file()
    assert (tmp_path / "runs/my/curves.png").is_file()
