"""The `Objective` protocol: what one kind of training contributes to the shared loop.

The loop (loop.py) owns everything that is the same for every kind of model (device, precision,
accumulation, clipping, schedule, stopping, evaluation, checkpoints, resume, faults); an
objective owns the rest: its batches, its loss and its validation. `Seq2SeqObjective`
(seq2seq.py) and `MLMObjective` (mlm.py) are the two implementations; setup.py picks one per
command.

This module imports nothing at run time, so the loop, the training state and the objectives
can all name the protocol without importing one another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch


class Objective(Protocol):
    """What one kind of training contributes to the loop (see docs/ARCHITECTURE.md)."""

    kind: str  # "seq2seq" | "mlm"
    primary_metric: str  # a key of evaluate()'s dict, e.g. "bleu" or "loss"
    higher_is_better: bool
    budget_knob: str  # recipe key sizing a batch, named in out-of-memory errors
    step: int  # updates done so far: the loop sets it before collating each update

    def train_batches(self, epoch: int, rank: int, world: int) -> list[Any]:
        """Cheap descriptors (index arrays): a pure function of (seed, epoch, rank, world), the
        same count on every rank, so that --resume replays them exactly."""
        ...

    def collate(self, batch: Any) -> dict[str, Any]:
        """CPU tensors (and plain ints), deterministic given the descriptor: per-batch randomness
        (MLM masks) comes from a generator seeded by what the descriptor holds."""
        ...

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict]:
        """The SUMMED loss (0-d) of one device batch, and stats: "tokens" (the normaliser: the loop
        divides the gradients by its sum over the accumulated batches and ranks), optional "nll"
        (summed, for perplexity) and "throughput" (tokens processed, for tokens/s)."""
        ...

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation metrics (including `primary_metric`); rank 0, eval mode, no_grad; {} when
        there is no validation data."""
        ...
