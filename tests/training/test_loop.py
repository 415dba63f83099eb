"""The shared training loop, driven by a tiny objective so each test runs in about a second.

`ToyModel`/`ToyObjective` (also imported by the tests of state, faults, validation,
checkpointing and display) implement the Objective protocol (training/objective.py) over
variable-length padded sequences, so token normalisation, accumulation, skipping, stopping rules
and checkpoints are exercised exactly as with the real objectives, without tokenizers or data.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tfcli.checkpoints import files as ckpt
from tfcli.checkpoints import steps as run_checkpoints
from tfcli.recipe.loader import from_dict
from tfcli.training.loop import train


class ToyModel(nn.Module):
    """Embedding -> tanh -> dropout -> linear: predicts each token from itself (B, T) -> (B, T, V)."""

    def __init__(self, vocab: int = 40, d: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.tanh(self.emb(x))))


class ToyObjective:
    """64 padded sequences (PAD=0) of 3..10 tokens; batches of `batch` rows, shuffled per epoch.

    `hooks` maps a call number of loss() (1-based) to a callable run inside it (inject NaN,
    signals, OOM). `valid` optionally fixes the sequence of validation losses.
    """

    kind = "toy"
    primary_metric = "loss"
    higher_is_better = False
    budget_knob = "train.max_tokens"

    def __init__(self, n: int = 64, batch: int = 8, hooks: dict | None = None, valid=None) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(5, 40, (n, 10), generator=g)
        lens = torch.randint(3, 11, (n,), generator=g)
        self.x[torch.arange(10)[None, :] >= lens[:, None]] = 0
        self.batch = batch
        self.hooks = hooks or {}
        self.valid = list(valid) if valid is not None else None
        self.calls = 0

    def train_batches(self, epoch: int, rank: int, world: int) -> list[np.ndarray]:
        perm = np.random.default_rng([0, epoch]).permutation(len(self.x))
        batches = [perm[i : i + self.batch] for i in range(0, len(perm), self.batch)]
        return batches[rank::world]

    def collate(self, idx: np.ndarray) -> dict:
        x = self.x[torch.as_tensor(idx)]
        return {"x": x, "tokens": int((x != 0).sum())}

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        self.calls += 1
        x = batch["x"]
        logits = model(x).flatten(0, 1).float()
        loss = F.cross_entropy(logits, x.flatten(), ignore_index=0, reduction="sum")
        hook = self.hooks.get(self.calls)
        if hook is not None:
            loss = hook(loss)
        return loss, {"tokens": batch["tokens"]}

    def evaluate(self, model: nn.Module) -> dict:
        if self.valid is not None:
            return {"loss": self.valid.pop(0) if self.valid else 1.0}
        x = self.x
        return {"loss": F.cross_entropy(model(x).flatten(0, 1), x.flatten(), ignore_index=0).item()}


def toy_recipe(run_dir, **train) -> object:
    cfg = {"max_steps": 12, "eval_every": 4, "log_every": 1, "keep_last": 2, "device": "cpu"}
    cfg.update(train)
    return from_dict(
        {"run_dir": str(run_dir), "train": cfg, "optim": {"lr": 0.01, "warmup_steps": 3}}
    )


def run_toy(run_dir, objective=None, dropout=0.1, resume=False, **train_cfg):
    """Train a freshly seeded ToyModel; returns (summary, model)."""
    torch.manual_seed(0)
    model = ToyModel(dropout=dropout)
    recipe = toy_recipe(run_dir, **train_cfg)
    summary = train(recipe, model, objective or ToyObjective(), {"kind": "toy"}, resume=resume)
    return summary, model


def read_metrics(run_dir, split="train") -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_trains_logs_and_keeps_checkpoints(tmp_path):
    summary, _ = run_toy(tmp_path, max_steps=24, eval_every=8, keep_last=2)
    assert summary["steps"] == 24 and summary["stopped"] == "max_steps"
    train_recs = read_metrics(tmp_path)
    assert [r["step"] for r in train_recs] == list(range(1, 25))
    assert train_recs[-1]["loss"] < train_recs[0]["loss"] - 0.3
    for key in ("loss", "ppl", "lr", "tokens_per_s", "grad_norm", "epoch"):
        assert all(np.isfinite(r[key]) for r in train_recs), key
    assert [r["step"] for r in read_metrics(tmp_path, "valid")] == [8, 16, 24]
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [
        "best.safetensors",
        "step-00000016.safetensors",
        "step-00000016.state.pt",
        "step-00000024.safetensors",
        "step-00000024.state.pt",
    ]
    meta = ckpt.read_meta(tmp_path / "checkpoints" / "step-00000024.safetensors")
    assert meta["step"] == 24 and meta["kind"] == "toy" and len(meta["history"]) == 3
    assert meta["best"]["step"] == 24 and meta["epoch"] == 3.0  # 8 batches per epoch


def test_inverse_sqrt_lr_logged_per_update(tmp_path):
    run_toy(tmp_path, max_steps=6)
    lrs = [r["lr"] for r in read_metrics(tmp_path)]
    expected = [0.01 * min(s / 3, (3 / s) ** 0.5) for s in range(1, 7)]  # peak at warmup=3
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_accumulation_matches_one_big_batch(tmp_path):
    """Two micro-batches of 8 rows (uneven token counts) == one batch of their 16 rows: the loss
    is normalised by the non-pad tokens over both, not averaged per micro-batch."""

    class Big(ToyObjective):
        def train_batches(self, epoch, rank, world):
            small = super().train_batches(epoch, rank, world)
            return [np.concatenate(small[i : i + 2]) for i in range(0, len(small), 2)]

    kw = dict(dropout=0.0, max_steps=6, eval_every=100)
    _, m1 = run_toy(tmp_path / "a", ToyObjective(), accumulate=2, **kw)
    _, m2 = run_toy(tmp_path / "b", Big(), accumulate=1, **kw)
    for (name, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    la = [r["loss"] for r in read_metrics(tmp_path / "a")]
    lb = [r["loss"] for r in read_metrics(tmp_path / "b")]
    np.testing.assert_allclose(la, lb, rtol=1e-5)


def test_max_epochs_and_partial_last_update(tmp_path):
    # 8 batches per epoch, accumulate 3: 2 epochs = 16 batches = 5 full updates + 1 of one batch
    summary, _ = run_toy(tmp_path, max_steps=0, max_epochs=2, accumulate=3, eval_every=100)
    assert summary["stopped"] == "max_epochs" and summary["steps"] == 6
    assert summary["epochs"] == 2.0
    assert read_metrics(tmp_path, "valid")[-1]["step"] == 6  # evaluated at the end


def test_early_stopping_on_patience(tmp_path):
    obj = ToyObjective(valid=[3.0, 2.0, 2.5, 2.1, 1.0])
    summary, _ = run_toy(tmp_path, obj, max_steps=100, eval_every=2, patience=2)
    assert summary["stopped"] == "patience" and summary["steps"] == 8
    assert summary["best"] == {"metric": "loss", "value": 2.0, "step": 4}
    best = ckpt.read_meta(tmp_path / "checkpoints" / "best.safetensors")
    assert best["step"] == 4


def test_max_minutes_stops_and_saves(tmp_path):
    summary, _ = run_toy(tmp_path, max_steps=1000, max_minutes=1e-6)
    assert summary["stopped"] == "max_minutes" and summary["steps"] == 1
    assert run_checkpoints.list_checkpoints(tmp_path)[-1].name == "step-00000001.safetensors"
