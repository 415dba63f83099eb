"""Checkpoint averaging (`tfcli average`): the element-wise mean of several checkpoints' weights.

Reads the files through `tfcli.checkpoints.files` (header, dtype codes); the result is saved with
`tfcli.checkpoints.files.save_checkpoint` by the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfcli.checkpoints.files import DTYPE_CODES, open_header
from tfcli.errors import CheckpointError

if TYPE_CHECKING:
    import torch


def average_checkpoints(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict]:
    """Element-wise mean of the weights of `paths` (fairseq's average_checkpoints semantics).

    Floating tensors are summed in float32 and cast back to their dtype; integer tensors must be
    equal everywhere. All checkpoints must share one model spec and tokenizer. Returns (state
    dict with shared tensors restored, meta of the newest input with meta["averaged"] added).
    """
    import torch
    from safetensors import safe_open

    paths = [Path(p) for p in paths]
    if not paths:
        raise CheckpointError(
            "no checkpoints to average; pass files or a run dir with step checkpoints"
        )
    heads = [open_header(p) for p in paths]
    _check_compatible(paths, heads)
    _, aliases0, shapes0 = heads[0]
    sums: dict[str, torch.Tensor] = {}
    for p in paths:
        with safe_open(str(p), framework="pt") as f:
            for name in f.keys():
                t = f.get_tensor(name)
                if not t.is_floating_point():
                    if name not in sums:
                        sums[name] = t
                    elif not torch.equal(sums[name], t):
                        raise CheckpointError(
                            f"cannot average {p}: integer tensor '{name}' differs"
                        )
                elif name in sums:
                    sums[name] += t.float()
                else:
                    sums[name] = t.float()
    state = {}
    for name, t in sums.items():
        dtype = _torch_dtype(shapes0[name][0])
        state[name] = t.div(len(paths)).to(dtype) if dtype.is_floating_point else t
    for alias, stored in aliases0.items():
        state[alias] = state[stored]
    steps = [h[0].get("step") if isinstance(h[0].get("step"), int) else -1 for h in heads]
    meta = dict(heads[max(range(len(heads)), key=lambda i: (steps[i], i))][0])
    meta["metrics"] = {}  # the inputs' validation scores are not this model's
    meta["averaged"] = {
        "sources": [str(p) for p in paths],
        "steps": [h[0].get("step") for h in heads],
        "method": "mean",
    }
    return state, meta


def _check_compatible(paths: list[Path], heads: list[tuple[dict, dict, dict]]) -> None:
    """Refuse checkpoints of different runs: another model spec, tokenizer or tensor set."""
    meta0, aliases0, shapes0 = heads[0]
    for p, (meta, aliases, shapes) in zip(paths[1:], heads[1:], strict=True):
        for key in ("model", "tokenizer"):
            if meta.get(key) != meta0.get(key):
                raise CheckpointError(
                    f"cannot average {paths[0]} and {p}: different {key} "
                    f"({_first_diff(meta0.get(key), meta.get(key))}); average checkpoints of one run"
                )
        if shapes != shapes0 or aliases != aliases0:
            names = sorted(set(shapes) ^ set(shapes0)) or [
                k for k in shapes if shapes[k] != shapes0.get(k)
            ]
            raise CheckpointError(
                f"cannot average {paths[0]} and {p}: tensors differ ({', '.join(names[:3])})"
            )


def _torch_dtype(code: str) -> torch.dtype:
    import torch

    names = {v: k for k, v in DTYPE_CODES.items()}
    return getattr(torch, names[code])


def _first_diff(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                shown = (str(a.get(k))[:20], str(b.get(k))[:20])
                return f"{k}: {shown[0]} vs {shown[1]}"
    return "values differ"
