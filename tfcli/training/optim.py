"""Optimizer and learning-rate schedules, from closed tables (no classes named in YAML).

Schedules are multiplicative factors of the peak `optim.lr` as a function of the 1-based update
number, wrapped for `torch.optim.lr_scheduler.LambdaLR` (whose counter starts at 0, so the first
update uses factor(1) and never a learning rate of exactly zero):

* inverse_sqrt (the paper's): linear warmup to the peak at `warmup_steps`, then
  `sqrt(warmup_steps / step)`. Equal to d_model^-0.5 * min(step^-0.5, step * warmup^-1.5) when
  the peak is d_model^-0.5 * warmup^-0.5 (7e-4 for d_model 512 and 4000 warmup steps).
* cosine: linear warmup, then a half cosine from the peak down to `min_lr` at `max_steps`.
* constant: linear warmup, then the peak.

`scale_and_clip` is the one multiply the loop applies to the gradients before each step: from
the summed loss's to the per-token mean's, clipped to `optim.clip_norm`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from tfcli.errors import RecipeError
from tfcli.recipe.schema import OptimConfig, OptimizerName, Schedule


def _inverse_sqrt(warmup: int) -> Callable[[int], float]:
    w = max(warmup, 1)  # no warmup = start at the peak and decay as 1/sqrt(step)
    return lambda step: min(step / w, math.sqrt(w / step))


def _cosine(warmup: int, max_steps: int, floor: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _constant(warmup: int) -> Callable[[int], float]:
    return lambda step: min(1.0, step / warmup) if warmup > 0 else 1.0


def lr_lambda(cfg: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """Factor of `cfg.lr` for LambdaLR: `f(i)` is the factor of update `i + 1` (i = 0, 1, ...)."""
    if cfg.schedule is Schedule.INVERSE_SQRT:
        factor = _inverse_sqrt(cfg.warmup_steps)
    elif cfg.schedule is Schedule.COSINE:
        if max_steps <= 0:
            raise RecipeError(
                ["the cosine schedule needs train.max_steps > 0 (it decays to optim.min_lr there)"],
                "optim.schedule",
            )
        factor = _cosine(cfg.warmup_steps, max_steps, cfg.min_lr / cfg.lr)
    else:
        factor = _constant(cfg.warmup_steps)
    return lambda i: factor(i + 1)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (linear and embedding weights), not biases or norm gains (as in GPT/BERT)."""
    decay, no_decay = [], []
    for p in model.parameters():  # .parameters() yields tied weights once
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam (betas 0.9/0.98, eps 1e-9 by default, L2 weight decay) or AdamW (decoupled decay).

    Uses the fused kernel where PyTorch has one for the parameters' device (CUDA, CPU, MPS): one
    launch per step instead of one per tensor, and it accepts the loop's `found_inf` flag, which
    skips a non-finite update on the device without a host synchronisation.
    """
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    device = next(model.parameters()).device.type
    fused = device in _get_fused_kernels_supported_devices()
    cls = torch.optim.AdamW if cfg.optimizer is OptimizerName.ADAMW else torch.optim.Adam
    return cls(
        _param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(float(cfg.betas[0]), float(cfg.betas[1])),
        eps=cfg.eps,
        fused=fused,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over `lr_lambda`; its state_dict is plain data (step counter, base lrs)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, max_steps))


def scale_and_clip(
    grads: list[torch.Tensor], scale: Any, clip_norm: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiply `grads` in place by `scale` (a number or 0-d tensor), clipping the global norm of
    the result to `clip_norm` (0 = no clipping): both in one multiply, with no host sync.

    Returns the scaled, unclipped global norm (0-d) and a 0-d bool flag: it is not finite.
    """
    norm = torch.nn.utils.get_total_norm(grads, foreach=True) * scale
    coef = scale * (clip_norm / (norm + 1e-6)).clamp(max=1.0) if clip_norm > 0 else scale
    torch._foreach_mul_(grads, coef)
    return norm, ~torch.isfinite(norm)
