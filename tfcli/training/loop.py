"""The one training loop, shared by `tfcli train` (seq2seq) and `tfcli pretrain-mlm` (MLM).

What changes between the two lives behind the `Objective` protocol (batches, loss, validation);
everything else is here: device and precision, gradient accumulation, clipping, the schedule,
stopping rules, evaluation, checkpoints, resume, and the faults a long run meets.

Loss scale. `Objective.loss` returns a summed loss; the loop back-propagates the sum for each
micro-batch, then multiplies the gradients once by 1 / (non-pad target tokens over all the
accumulated batches and ranks), so an update is the per-token mean however the tokens fell into
batches (fairseq's convention). Clipping folds into the same multiply.

Host syncs. Nothing in an update reads a device value on the host: losses, norms and the
non-finite flag accumulate on the device and are read every `train.log_every` updates. A
non-finite gradient skips its update inside the fused optimizer (its `found_inf` input), so
skipping costs no sync either. On CPU, where a read is free, the flag is checked every update.

Beside this file: objective.py (the protocol), state.py (what is saved with each checkpoint and
restored by --resume, so that a resumed run replays exactly the batches and dropout masks of an
uninterrupted one), validation.py (evaluation, best, patience), checkpointing.py (writing step
and best checkpoints) and faults.py (non-finite updates, out of memory, Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from tfcli import console
from tfcli.allocator import keep_freed_memory
from tfcli.errors import TrainingError
from tfcli.recipe.schema import Precision, Recipe
from tfcli.run_dir import RunDir
from tfcli.training import distributed
from tfcli.training.checkpointing import Checkpointer
from tfcli.training.display import Display, MetricsLog
from tfcli.training.faults import NonFiniteUpdates, StopSignals, is_oom, oom_message
from tfcli.training.meter import TrainMeter
from tfcli.training.objective import Objective
from tfcli.training.optim import build_optimizer, build_scheduler, scale_and_clip
from tfcli.training.state import BatchStream, Progress, latest_resumable, restore
from tfcli.training.validation import record_best, validate

# --- helpers ---------------------------------------------------------------------------------


def _amp_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where asked (auto: on CUDA GPUs that support it), else plain fp32."""
    if precision is Precision.BF16:
        return torch.bfloat16
    if precision is Precision.AUTO and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def _hardware(dist: distributed.Dist, amp: torch.dtype | None) -> dict[str, Any]:
    """What the run trains on, for the checkpoint metadata."""
    device = dist.device
    return {
        "device": device.type, "processes": dist.world,
        "precision": "bf16" if amp is torch.bfloat16 else "fp32",
        "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
    }  # fmt: skip


# --- the trainer -----------------------------------------------------------------------------


class Trainer:
    """One training run: set up by __init__, optionally `resume()`d, then `run()`."""

    def __init__(
        self, recipe: Recipe, model: torch.nn.Module, objective: Objective, meta_base: dict
    ):
        self.recipe, self.cfg, self.objective = recipe, recipe.train, objective
        self.meta_base = meta_base
        self.run_dir = Path(recipe.run_dir)
        self.dist = distributed.setup(self.cfg.device)
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, recipe.optim)
        self.scheduler = build_scheduler(self.optimizer, recipe.optim, self.cfg.max_steps)
        self.fused = bool(self.optimizer.defaults.get("fused"))
        self.amp = _amp_dtype(self.cfg.precision, self.device)
        self.hardware = _hardware(self.dist, self.amp)
        self.p = Progress()
        self.resumed_from: Path | None = None
        self.resumed_meter: dict | None = None  # the open log interval of the checkpoint resumed
        self.signals = StopSignals(self.dist.main)
        self.checkpoints = Checkpointer(RunDir(self.run_dir), self.dist, self.cfg.keep_last)
        self.last_eval = -1
        self.metrics: dict = {}  # latest validation record
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers of bf16 autocast
            torch.backends.cudnn.allow_tf32 = True
        distributed.seed_all(self.cfg.seed, self.dist.rank)

    @property
    def stop_signal(self) -> int:
        """The signal that asked this run to stop; 0 while none has."""
        return self.signals.signum

    # --- resume ----------------------------------------------------------------------------

    def resume(self) -> None:
        """Load the latest checkpoint that has its training state; fall back to older ones."""
        path, saved = latest_resumable(self.run_dir, warn=self.dist.main)
        self.p = restore(
            path, saved, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            dist=self.dist, seed=self.cfg.seed, run_dir=self.run_dir,
        )  # fmt: skip
        self.resumed_from = path
        meters = saved.get("meter") or []  # the log interval open at the save, per rank
        self.resumed_meter = meters[self.dist.rank] if len(meters) == self.dist.world else None
        self.last_eval = self.checkpoints.last_step = self.p.step
        if self.p.history:
            self.metrics = self.p.history[-1]

    # --- one update ------------------------------------------------------------------------

    def _autocast(self):
        if self.amp is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def update(self, micro: list[Any], deadline: float | None = None) -> bool:
        """One optimizer update over the micro-batch descriptors `micro` (forward/backward each).

        Returns whether to stop after it (a signal arrived, or time is up, on any rank). Public
        so that benchmarks time exactly the loop's step; `prepare()` must have run.
        """
        tokens: Any = 0
        throughput: Any = 0
        loss_sum = nll_sum = None
        # Objectives whose batches depend on the schedule (seq2seq's train.exposure) read the
        # number of updates done from here; a restored Progress gives a resumed run the same.
        self.objective.step = self.p.step
        for i, desc in enumerate(micro):
            batch = distributed.to_device(self.objective.collate(desc), self.device)
            defer = self.dist.enabled and i < len(micro) - 1  # all-reduce once, on the last
            with self.ddp.no_sync() if defer else nullcontext():
                with self._autocast():
                    loss, stats = self.objective.loss(self.net, batch)
                loss.backward()
            loss = loss.detach()
            nll = stats.get("nll", loss)
            nll = nll.detach() if isinstance(nll, torch.Tensor) else nll
            loss_sum = loss if loss_sum is None else loss_sum + loss
            nll_sum = nll if nll_sum is None else nll_sum + nll
            tokens = tokens + stats["tokens"]
            throughput = throughput + stats.get("throughput", stats["tokens"])
        want_stop = bool(self.stop_signal) or (
            deadline is not None and time.monotonic() >= deadline
        )
        total, stop = self.dist.agree(tokens, want_stop)
        norm, bad = self._normalise_and_clip(total)
        if self.fused:
            self.optimizer.found_inf = bad.float()  # the kernel skips the update on the device
            self.optimizer.step()
        elif not bad.item():
            self.optimizer.step()
        self.lr = self.scheduler.get_last_lr()[0]  # the rate this update used
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.meter.add(loss_sum, nll_sum, tokens, throughput, norm, bad)
        self.nonfinite.add(bad)
        return stop

    def _normalise_and_clip(self, total: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the summed loss -> of the per-token mean, clipped; one multiply.

        Returns the (unclipped) global gradient norm and a flag: it is not finite.
        """
        grads = [p.grad for p in self.params if p.grad is not None]
        # DDP already averaged over ranks; undo that and divide by all ranks' tokens instead.
        if isinstance(total, torch.Tensor):
            scale: Any = self.dist.world / total.clamp(min=1)
        else:
            scale = self.dist.world / max(float(total), 1.0)
        return scale_and_clip(grads, scale, self.recipe.optim.clip_norm)

    # --- the loop --------------------------------------------------------------------------

    def prepare(self) -> None:
        """Wrap the model (DDP, torch.compile), open metrics.jsonl; after resume(), before update()."""
        cfg = self.cfg
        keep_freed_memory(self.device)  # on CPU, no page faults on the step's large tensors
        self.net = self.ddp = distributed.wrap(self.model, self.dist)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.net.train()
        self.stream = BatchStream(self.objective, self.dist, cfg.max_epochs, self.p)
        self.log = MetricsLog(
            RunDir(self.run_dir), self.dist.main, cfg.tensorboard,
            self.p.step if self.resumed_from is not None else None,
        )  # fmt: skip
        self.meter = TrainMeter(self.device)
        if self.resumed_meter is not None:
            self.meter.load(self.resumed_meter)
        self.nonfinite = NonFiniteUpdates(self.device)

    def run(self) -> dict:
        """Train until a stopping rule fires; evaluate and save on the way and at the end."""
        cfg, p = self.cfg, self.p
        self.prepare()
        start, base = time.monotonic(), p.train_seconds
        deadline = start + cfg.max_minutes * 60 - base if cfg.max_minutes > 0 else None
        display = Display(self.dist.main, cfg.max_steps, p.step)
        if self.resumed_from is not None and self.dist.main:
            console.step(f"resuming from {self.resumed_from} (step {p.step})")
        try:
            with self.signals, display:
                self.display = display
                while not p.stopped:
                    if cfg.max_steps and p.step >= cfg.max_steps:
                        p.stopped = "max_steps"
                        break
                    micro = self.stream.take(cfg.accumulate)
                    if not micro:
                        p.stopped = "max_epochs"
                        break
                    stop = self._update_or_explain(micro, deadline)
                    p.step += 1
                    p.train_seconds = base + time.monotonic() - start
                    self._after_update(deadline)  # may stop early: p.stopped = "patience"
                    if stop:
                        p.stopped = self._stop_reason(deadline)
                self._finish()
        finally:
            self.log.close()
        return self._summary()

    def _update_or_explain(self, micro: list[Any], deadline: float | None) -> bool:
        """`update`, with running out of memory turned into what to lower."""
        try:
            return self.update(micro, deadline)
        except Exception as e:
            if is_oom(e):
                raise TrainingError(self._oom_message()) from None
            raise

    def _stop_reason(self, deadline: float | None) -> str:
        """Why `update` asked to stop: a signal here, the time limit, or another rank's signal."""
        if self.stop_signal:
            return "interrupted"
        if deadline is not None and time.monotonic() >= deadline:
            return "max_minutes"
        return "stopped"  # another rank was signalled

    def _after_update(self, deadline: float | None) -> None:
        cfg, step = self.cfg, self.p.step
        lr = self.lr
        self.display.advance(step, self.stream.epoch_progress(), lr, deadline)
        if self.device.type == "cpu" or step % cfg.log_every == 0:
            self._check_health()
        if step % cfg.log_every == 0:
            self._log_train(lr, deadline)
        evaluated = step % cfg.eval_every == 0
        if evaluated:
            self._evaluate()
        if (cfg.save_every and step % cfg.save_every == 0) or (not cfg.save_every and evaluated):
            self._save()
        elif evaluated and self._new_best:
            self.checkpoints.save_best(self.model, self._meta())
        if evaluated or step == self.checkpoints.last_step:
            self.meter.t0 = time.monotonic()  # keep validation and saving out of tokens/s

    def _finish(self) -> None:
        """At the end: evaluate (unless interrupted) and save, once, if not already done."""
        p = self.p
        if p.step == 0 or p.step == self.checkpoints.last_step:
            return
        if p.stopped != "interrupted" and self.last_eval != p.step:
            self._evaluate()
        self._save()

    # --- health, logs, evaluation ----------------------------------------------------------

    def _check_health(self) -> None:
        """Warn about skipped (non-finite) updates; too many in a row is a TrainingError."""
        self.nonfinite.check(
            self.p.step, self.cfg.max_nan_steps, main=self.dist.main,
            last_checkpoint=self.checkpoints.last_path, run_dir=self.run_dir,
        )  # fmt: skip

    def _log_train(self, lr: float, deadline: float | None) -> None:
        rec = self.meter.record(
            self.dist, step=self.p.step, epoch=self.stream.epoch_progress(), lr=lr,
            elapsed=self.p.train_seconds,
        )  # fmt: skip
        self.log.write(rec)
        self.display.train(rec, deadline)
        self.meter.reset()

    def _evaluate(self) -> None:
        """Validation on rank 0 (global RNG untouched); best and patience; agree on stopping."""
        p, stop = self.p, 0.0
        self.last_eval = p.step
        if self.dist.main:
            try:
                metrics = validate(self.objective, self.model, self.device, self._autocast)
            except Exception as e:
                if is_oom(e):
                    raise TrainingError(self._oom_message(validation=True)) from None
                raise
            rec = {"step": p.step, "epoch": self.stream.epoch_progress(), "split": "valid"}
            rec.update(metrics)
            p.history.append(rec)
            self.metrics = rec
            stop = float(record_best(p, rec, self.objective, self.cfg.patience))
            self.log.write(rec)
            self.display.valid(rec, p.best)
        if self.dist.sum([stop])[0] > 0:
            p.stopped = "patience"

    @property
    def _new_best(self) -> bool:
        """This step's evaluation set a new best (known on rank 0, the one that writes it)."""
        best = self.p.best
        return best is not None and best["step"] == self.p.step == self.last_eval

    # --- checkpoints -----------------------------------------------------------------------

    def _meta(self) -> dict:
        p = self.p
        return {
            **self.meta_base, "step": p.step, "epoch": self.stream.epoch_progress(),
            "metrics": self.metrics, "best": p.best, "history": p.history,
            "hardware": self.hardware, "train_seconds": round(p.train_seconds, 2),
        }  # fmt: skip

    def _save(self) -> None:
        """A step checkpoint (and best, and pruning) on rank 0; every rank takes part."""
        self._check_health()  # never checkpoint past a divergence the host has not seen yet
        self.checkpoints.save(
            self.model, self._meta(), self.optimizer, self.scheduler, self.p,
            best=self._new_best, meter=self.meter.state(),
        )  # fmt: skip

    def _oom_message(self, validation: bool = False) -> str:
        knob = self.objective.budget_knob
        return oom_message(self.recipe, knob, self.device, self.p.step, validation=validation)

    def _summary(self) -> dict:
        p = self.p
        return {
            "steps": p.step,
            "epochs": self.stream.epoch_progress(),
            "train_seconds": p.train_seconds,
            "stopped": p.stopped,
            "signal": self.stop_signal,
            "best": p.best,
            "metrics": self.metrics,
            **self.checkpoints.on_disk(),
            "run_dir": self.run_dir,
            "rank": self.dist.rank,
        }


def train(
    recipe: Recipe,
    model: torch.nn.Module,
    objective: Objective,
    meta_base: dict,
    *,
    resume: bool = False,
) -> dict:
    """Train `model` on `objective` under `recipe.train`; write checkpoints and metrics.jsonl.

    `meta_base` (kind, model spec, recipe, tokenizer) goes into every checkpoint's metadata.
    With `resume`, continue from the latest checkpoint of `recipe.run_dir` that has its training
    state. Returns a summary: steps, epochs, train_seconds, stopped ("max_steps", "max_epochs",
    "max_minutes", "patience", "interrupted"), signal, best, metrics (last validation),
    last_checkpoint, best_checkpoint, run_dir, rank.
    """
    trainer = Trainer(recipe, model, objective, meta_base)
    try:
        if resume:
            trainer.resume()
        return trainer.run()
    finally:
        trainer.dist.close()
