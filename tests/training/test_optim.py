"""Optimizers and learning-rate schedules (tfcli.training.optim)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tfcli.errors import RecipeError
from tfcli.recipe.schema import OptimConfig, OptimizerName, Schedule
from tfcli.training.optim import build_optimizer, build_scheduler, lr_lambda, scale_and_clip


def lrs(cfg: OptimConfig, max_steps: int, n: int) -> list[float]:
    """Learning rates actually used by updates 1..n."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, max_steps)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_inverse_sqrt_is_the_papers_formula():
    """Paper: lr = d^-0.5 * min(step^-0.5, step * warmup^-1.5). With d_model 512 and warmup
    4000 its peak (at step 4000) is 512^-0.5 * 4000^-0.5 = 7.0e-4, which is what optim.lr sets."""
    d, warmup = 512, 4000
    peak = d**-0.5 * warmup**-0.5
    f = lr_lambda(OptimConfig(lr=peak, warmup_steps=warmup), max_steps=0)
    for step in (1, 10, 1000, 3999, 4000, 4001, 10000, 100000):
        paper = d**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert peak * f(step - 1) == pytest.approx(paper, rel=1e-12), step
    assert peak == pytest.approx(6.99e-4, abs=1e-6)


def test_first_update_uses_a_nonzero_rate_and_the_peak_is_at_warmup():
    cfg = OptimConfig(lr=1e-3, warmup_steps=4)
    got = lrs(cfg, 0, 16)
    assert got[0] == pytest.approx(1e-3 / 4)
    assert max(got) == pytest.approx(1e-3) and got.index(max(got)) == 3
    assert got[15] == pytest.approx(1e-3 * math.sqrt(4 / 16))


def test_inverse_sqrt_without_warmup_decays_from_the_peak():
    f = lr_lambda(OptimConfig(warmup_steps=0), 0)
    assert [f(i) for i in (0, 3, 99)] == pytest.approx([1.0, 0.5, 0.1])


def test_cosine_warms_up_then_reaches_min_lr_at_max_steps():
    cfg = OptimConfig(lr=1e-3, min_lr=1e-4, schedule=Schedule.COSINE, warmup_steps=10)
    got = lrs(cfg, 110, 130)
    assert got[4] == pytest.approx(5e-4)  # update 5 of 10 warmup
    assert got[9] == pytest.approx(1e-3)  # peak
    assert got[59] == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # half way down
    assert got[109] == pytest.approx(1e-4) and got[129] == pytest.approx(1e-4)  # floor after


def test_cosine_needs_max_steps():
    with pytest.raises(RecipeError, match="train.max_steps"):
        lr_lambda(OptimConfig(schedule=Schedule.COSINE), 0)


def test_constant_after_warmup():
    got = lrs(OptimConfig(lr=2e-3, schedule=Schedule.CONSTANT, warmup_steps=2), 0, 5)
    assert got == pytest.approx([1e-3, 2e-3, 2e-3, 2e-3, 2e-3])


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.lin = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight  # tied, as in the real models


def test_adam_defaults_are_the_papers():
    opt = build_optimizer(Tiny(), OptimConfig())
    assert type(opt) is torch.optim.Adam
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-9
    assert opt.defaults["fused"]  # CPU has a fused kernel too (and it takes found_inf)


def test_adamw_decays_matrices_only_and_counts_tied_weights_once():
    model = Tiny()
    opt = build_optimizer(model, OptimConfig(optimizer=OptimizerName.ADAMW, weight_decay=0.1))
    assert type(opt) is torch.optim.AdamW
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.emb.weight), id(model.lin.weight)}
    assert all(p.ndim == 1 for p in no_decay["params"])  # biases, norm gains
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


def test_scale_and_clip_is_one_multiply_of_the_gradients():
    """Gradients of a summed loss over 4 tokens -> of the mean (scale 1/4), clipped to norm 1."""
    grads = [torch.tensor([6.0, 8.0]), torch.tensor([0.0])]  # norm 10 -> 2.5 after scaling
    norm, bad = scale_and_clip(grads, 0.25, clip_norm=1.0)
    assert norm.item() == pytest.approx(2.5) and not bad
    assert torch.linalg.vector_norm(torch.cat(grads)).item() == pytest.approx(1.0, rel=1e-5)
    unclipped = [torch.tensor([6.0, 8.0])]
    norm, _ = scale_and_clip(unclipped, torch.tensor(0.25), clip_norm=0.0)  # 0 = no clipping
    assert norm.item() == pytest.approx(2.5) and unclipped[0].tolist() == [1.5, 2.0]
    _, bad = scale_and_clip([torch.tensor([float("inf")])], 1.0, clip_norm=1.0)
    assert bad  # the loop skips this update
