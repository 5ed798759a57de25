"""What every alignment training loop shares: config checks, one reporting convention, a stop on
divergence, periodic checkpoints and resume.

Each stage (SFT, DPO, GRPO, expert iteration, reward model, PPO) is one function in unit 1's style,

    result = train_x(model, ..., config, evaluate=None, callback=None, checkpoint_dir=None, resume=False)

that calls ``callback(metrics)`` after every optimizer step (or rollout batch) and returns a
:class:`StageResult`. The bookkeeping around the algorithm lives here, in :class:`StageLoop`:

    loop = StageLoop("sft", model, optimizer, config, evaluate, callback, checkpoint_dir, resume, rngs)
    for step in loop.steps(config.steps):            # starts after the last checkpoint when resuming
        ... forward, backward ...
        grad_norm = loop.optimizer_step(loss)        # non-finite loss or gradient: TrainingDiverged
        loop.end_step({"loss": loss, ...})           # evaluation, callback, periodic checkpoint
    return loop.result()

A diverged step raises unit 1's ``TrainingDiverged`` naming the last good checkpoint *before* the
optimizer applies it, so no NaN ever reaches the weights or the disk. A checkpoint holds the model, the
optimizer, every RNG the loop draws from (``rngs``: Python ``random.Random`` and ``torch.Generator``
objects, restored in place) and the stage's config, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from basics.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    save_checkpoint,
)
from basics.nn_utils import clip_gradients
from basics.train import TrainingDiverged

__all__ = ["StageLoop", "StageResult", "TrainingDiverged", "check_config", "autocast", "set_learning_rate"]

Metrics = dict[str, float]
Callback = Callable[[Metrics], None]
Evaluate = Callable[[Any], Metrics]


# ----------------------------------------------------------------------------------------------------
# Config checks (called from each stage config's __post_init__)


def check_config(
    config: Any,
    *,
    positive: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    unit_interval: tuple[str, ...] = (),
    at_least_two: tuple[str, ...] = (),
) -> None:
    """Raise a one-line ``ValueError`` for the first bad field of a frozen config.

    Every float field must be finite first (``nan < 0`` is False, so a range check alone lets NaN
    through); then ``positive`` fields > 0, ``non_negative`` >= 0, ``unit_interval`` in [0, 1], and
    ``at_least_two`` >= 2 (a group whose standard deviation is taken needs two members).
    """
    name = type(config).__name__
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}.{f.name} must be a finite number, got {value}")
    checks = (
        (positive, lambda v: v > 0, "> 0"),
        (non_negative, lambda v: v >= 0, ">= 0"),
        (unit_interval, lambda v: 0 <= v <= 1, "in [0, 1]"),
        (at_least_two, lambda v: v >= 2, ">= 2"),
    )
    for fields, ok, rule in checks:
        for key in fields:
            value = getattr(config, key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name}.{key} must be a number, got {value!r}")
            if not ok(value):
                raise ValueError(f"{name}.{key} must be {rule}, got {value}")


# ----------------------------------------------------------------------------------------------------
# Small pieces


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def autocast(model: Any) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing elsewhere.

    Policies train with fp32 master weights (an HF model is loaded in fp32 for training): the forward
    runs its matmuls in bf16 under autocast, while AdamW's update and moments stay in fp32 -- a pure-bf16
    update at lr 1e-6 would round most changes away (bf16 keeps 8 bits of mantissa).
    """
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration):
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _rng_state(rng: random.Random | torch.Generator) -> Any:
    if isinstance(rng, torch.Generator):
        return rng.get_state()
    version, internal, gauss_next = rng.getstate()
    return {"version": version, "internal": list(internal), "gauss_next": gauss_next}


def _set_rng_state(rng: random.Random | torch.Generator, state: Any) -> None:
    if isinstance(rng, torch.Generator):
        rng.set_state(state)
    else:
        rng.setstate((state["version"], tuple(state["internal"]), state["gauss_next"]))


# ----------------------------------------------------------------------------------------------------
# The loop bookkeeping


@dataclass
class StageResult:
    """What a finished alignment stage reports."""

    steps: int  # optimizer steps (or rollout batches) completed
    metrics: Metrics  # the last step's metrics
    evaluation: Metrics  # the last evaluation's output ({} without an evaluate callback)
    checkpoint: Path | None  # the last checkpoint written (None without a checkpoint_dir)
    elapsed_s: float  # wall time of this call
    history: list[Metrics] = field(default_factory=list)  # every step's metrics, in order


class StageLoop:
    """Evaluation, callbacks, the divergence stop, checkpoints and resume for one stage's loop."""

    def __init__(
        self,
        stage: str,
        model: Any,
        optimizer: torch.optim.Optimizer | None,
        config: Any,
        *,
        evaluate: Evaluate | None = None,
        callback: Callback | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        rngs: Mapping[str, random.Random | torch.Generator] | None = None,
        extra_modules: Mapping[str, torch.nn.Module] | None = None,
    ):
        self.stage, self.model, self.optimizer, self.config = stage, model, optimizer, config
        self.evaluate, self.callback = evaluate, callback
        self.directory = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.resume_requested = resume
        self.rngs = dict(rngs or {})
        self.extra_modules = dict(extra_modules or {})  # e.g. PPO's value model
        self.every = int(getattr(config, "checkpoint_every", 0))
        self.eval_every = int(getattr(config, "eval_every", 0))
        self.max_grad_norm = float(getattr(config, "max_grad_norm", 0.0))
        self.checkpoint: Path | None = None
        self.history: list[Metrics] = []
        self.evaluation: Metrics = {}
        self.step = 0
        self.total = 0
        self.started = time.perf_counter()
        if resume and self.directory is None:
            raise ValueError("resume needs a checkpoint directory")

    # -- resume and checkpoints

    def _resume(self) -> int:
        assert self.directory is not None
        path = latest_checkpoint(self.directory)
        if path is None:
            raise FileNotFoundError(f"nothing to resume: no checkpoint_*.pt in {self.directory}")
        saved = read_checkpoint(path)
        stage = (saved.get("config") or {}).get("stage")
        if stage != self.stage:
            raise ValueError(
                f"{path} is a {stage!r} checkpoint; cannot resume the {self.stage!r} stage from it"
            )
        step = load_checkpoint(path, self.model, self.optimizer, restore_rng=True)
        extra = saved.get("extra") or {}
        for name, module in self.extra_modules.items():
            module.load_state_dict(extra["modules"][name])
        for name, rng in self.rngs.items():
            _set_rng_state(rng, extra["rngs"][name])
        self.checkpoint = path
        return step

    def save(self, step: int) -> Path:
        """Write ``checkpoint_<step>.pt`` atomically and keep the two newest."""
        assert self.directory is not None
        path = checkpoint_path(self.directory, step)
        extra = {
            "rngs": {name: _rng_state(rng) for name, rng in self.rngs.items()},
            "modules": {name: m.state_dict() for name, m in self.extra_modules.items()},
        }
        config = {"stage": self.stage, "settings": dataclasses.asdict(self.config)}
        save_checkpoint(self.model, self.optimizer, step, path, config=config, extra=extra)
        prune_checkpoints(self.directory, keep=2)  # this one and the one before, as a fallback
        self.checkpoint = path
        return path

    def steps(self, total: int) -> Iterator[int]:
        """Steps 1..total, starting after the last checkpoint when resuming; puts the model in train mode."""
        self.total = total
        start = self._resume() if self.resume_requested else 0
        for step in range(start + 1, total + 1):
            self.step = step
            if hasattr(self.model, "train"):
                self.model.train()
            yield step
        if hasattr(self.model, "eval"):
            self.model.eval()

    # -- one step

    def last_good(self) -> str:
        if self.checkpoint is None:
            return "no checkpoint was written"
        return f"the last good checkpoint is {self.checkpoint}"

    def diverged(self, what: str, value: float) -> TrainingDiverged:
        return TrainingDiverged(
            f"{self.stage}: {what} became {value} at step {self.step}; {self.last_good()}"
        )

    def clip(self, parameters: Any, what: str = "the gradient norm") -> float:
        """Clip the gradients of ``parameters`` to ``max_grad_norm`` (when > 0); a non-finite norm stops
        training. Returns the norm before clipping."""
        params = list(parameters)
        if self.max_grad_norm > 0:
            norm = float(clip_gradients(params, self.max_grad_norm))
        else:
            grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
            norm = float(torch.stack(grads).norm()) if grads else 0.0
        if not math.isfinite(norm):
            raise self.diverged(what, norm)
        return norm

    def optimizer_step(self, loss: float, parameters: Any = None) -> float:
        """Check the loss, clip the gradients, check their norm, then step; returns the norm before clipping."""
        if not math.isfinite(loss):
            raise self.diverged("the loss", loss)
        norm = self.clip(parameters if parameters is not None else self.model.parameters())
        assert self.optimizer is not None, "optimizer_step needs the loop's optimizer"
        self.optimizer.step()
        return norm

    def end_step(self, metrics: Metrics) -> None:
        """Evaluate when due, report, and checkpoint when due (always at the last step)."""
        metrics = {"step": self.step, **metrics}
        last = self.step == self.total
        if self.evaluate is not None and self.eval_every and (self.step % self.eval_every == 0 or last):
            was_training = getattr(self.model, "training", False)
            self.model.eval()
            self.evaluation = self.evaluate(self.model)
            self.model.train(was_training)
            metrics.update(self.evaluation)
        self.history.append(metrics)
        if self.callback is not None:
            self.callback(metrics)
        if self.directory is not None and ((self.every and self.step % self.every == 0) or last):
            self.save(self.step)

    def result(self) -> StageResult:
        return StageResult(
            steps=self.step,
            metrics=self.history[-1] if self.history else {},
            evaluation=self.evaluation,
            checkpoint=self.checkpoint,
            elapsed_s=time.perf_counter() - self.started,
            history=self.history,
        )
