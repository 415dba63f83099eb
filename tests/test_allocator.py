"""tfcli.allocator: glibc keeps freed blocks, so a step's large tensors reuse memory."""

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from tfcli.allocator import keep_freed_memory
on = keep_freed_memory()
torch.manual_seed(0)
proj = torch.nn.Linear(256, 8000)
h = torch.randn(2048, 256)
def step():  # a training step's largest tensors: (N, V) logits and their gradients, 64 MB each
    torch.log_softmax(proj(h), -1).mean().backward()
for _ in range(2):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(on, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


def _probe(env_extra: dict) -> tuple[bool, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    on, faults = out.stdout.split()
    return on == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_freed_memory_is_reused_without_page_faults():
    on, tuned = _probe({})
    off, default = _probe({"TFCLI_MALLOC_DEFAULTS": "1"})
    assert on and not off
    # glibc's default maps each fresh 64 MB block anew: one fault per 4 KB page (~65k per
    # step here); with the thresholds raised freed blocks come back from the heap (a few
    # thousand faults remain where the heap fragments).
    assert default > 30_000
    assert tuned < default / 3


def test_other_devices_leave_the_allocator_alone():
    """Only CPU work raises the thresholds; GPU memory has its own caching allocator."""
    from tfcli.allocator import keep_freed_memory

    assert keep_freed_memory("cuda:0") is False
    assert keep_freed_memory("mps") is False
