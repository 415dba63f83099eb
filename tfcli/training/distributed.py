"""Devices and torch.distributed for the training loop.

`torchrun --nproc_per_node N -m tfcli train RECIPE` starts N copies of the command; each finds
its rank in the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...),
joins the process group (NCCL on CUDA, gloo on CPU) and trains a DistributedDataParallel
replica on its shard of every epoch's batches. Only rank 0 writes files or shows progress.

Small control values (token counts, stop requests, RNG states) travel over a gloo group on the
host, so agreeing on them never waits for the GPU.

Each process also owns its RNG streams (dropout differs per rank): `seed_all` derives them from
(train.seed, rank), and `rng_state` / `set_rng_state` capture and restore every one of them
(torch, CUDA, numpy, python) as plain tensors and numbers for the training state.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from tfcli.device import pick_device
from tfcli.errors import TrainingError
from tfcli.recipe.schema import Device


@dataclass
class Dist:
    """Where this process sits: rank among `world` processes, and its device."""

    rank: int
    world: int
    device: torch.device
    control: Any = None  # gloo process group for host-side values (None when world == 1)
    owns_group: bool = False  # this process initialised torch.distributed (and tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks of a few host numbers (identity on one process)."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, group=self.control)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, indexed by rank (a list of one on one process)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def agree(self, tokens: Any, want_stop: bool) -> tuple[Any, bool]:
        """An update's normaliser summed over ranks (a 0-d tensor stays on the device), and
        whether any rank wants to stop; as given on one process."""
        if not self.enabled:
            return tokens, want_stop
        if isinstance(tokens, torch.Tensor):
            tokens = tokens.detach().clone().float()
            dist.all_reduce(tokens)
            (stop,) = self.sum([float(want_stop)])
            return tokens, stop > 0
        total, stop = self.sum([float(tokens), float(want_stop)])
        return total, stop > 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier(group=self.control)

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def setup(pref: Device) -> Dist:
    """Join the process group torchrun describes in the environment, or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(rank=0, world=1, device=pick_device(pref, error=TrainingError))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(pref, local_rank, error=TrainingError)
    if device.type == "mps":
        raise TrainingError("multi-process training is not supported on MPS; use one process")
    owns = not dist.is_initialized()
    if owns:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            dist.init_process_group(backend=backend, init_method="env://")
        except (RuntimeError, ValueError) as e:
            raise TrainingError(
                f"cannot join the torch.distributed group (rank {rank} of {world}): {e}; "
                "start with `torchrun --nproc_per_node N -m tfcli train RECIPE`"
            ) from None
    control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return Dist(rank=rank, world=world, device=device, control=control, owns_group=owns)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch's tensors on `device` (through pinned memory to a GPU, without waiting);
    other values as they are."""
    pin = device.type == "cuda"
    return {
        k: (v.pin_memory().to(device, non_blocking=True) if pin else v.to(device))
        if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }  # fmt: skip


def wrap(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """DistributedDataParallel on several processes (rank 0's weights are broadcast), else as is."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [d.device.index] if d.device.type == "cuda" else None
    return DDP(model, device_ids=ids)


# --- per-process RNG state ------------------------------------------------------------------------------


def seed_all(seed: int, rank: int) -> None:
    """Fresh-start seeds for dropout & co., derived from (train.seed, rank)."""
    hi, lo = np.random.SeedSequence([seed, rank, 0x7472]).generate_state(2)
    torch.manual_seed(int(hi) << 32 | int(lo))  # also seeds every CUDA device
    np.random.seed(int(lo))
    random.seed(int(hi))


def rng_state(device: torch.device) -> dict:
    """Every RNG this process draws from, as plain tensors/numbers (weights_only-loadable)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": py_gauss},
    }  # fmt: skip
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
