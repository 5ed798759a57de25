"""The training job: a loop a student can read in one screen.

Follows the assignment 1 handout (section 5, "Training loop"): sample random windows of a tokenized
corpus, forward, cross-entropy, backward with gradient accumulation, global-norm clipping, AdamW
with a warmup + cosine (or warmup-stable-decay) schedule; periodic validation loss and perplexity;
checkpoints every N steps and at the end, written atomically so an interrupted run resumes from the
last one with ``resume=True`` and continues bit for bit (on the CPU).

:func:`train` is set-up plus one loop in nanoGPT's order -- learning rate, evaluation and checkpoint,
forward/backward over the micro-batches, clipping, optimizer step, logging -- and each of those is a
named function below. Choices a student may skip on first reading:

* **No host syncs between log steps.** The loss and the gradient norm stay on the device
  (:class:`RunningStats`) and are read once per log step, so on a GPU the host queues step after step
  without waiting. The same read watches for divergence: a non-finite loss or gradient stops the run
  with :class:`TrainingDiverged`, which names the last good checkpoint; nothing non-finite is saved.
* **The loss inside the compiled region.** With ``compile=True`` the whole of :func:`training_loss`
  (model *and* cross-entropy) is one ``torch.compile`` graph, so the fp32 upcast of the logits is fused
  into the loss kernels instead of materialising a full fp32 copy of the ``(batch, seq, vocab)`` logits.
* **Parallelism is passed in.** A :class:`basics.strategy.Strategy` wraps the model, builds the
  optimizer and runs forward/backward; the default is one process on one device, and ``systems``
  supplies data parallelism (``systems.strategy.DataParallel``) without ``basics`` importing it.
* **Bad input stops at the door.** The config validates itself; the token arrays are range-checked
  and the model's memory is compared with the device's before anything is allocated or written.

Library code: it returns a :class:`TrainResult` and calls ``callback(metrics)`` for every log line
(and for warnings, as ``{"step": ..., "warning": ...}``); ``scripts/train.py`` does the printing.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from basics.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    read_latest_checkpoint,
    remove_partial_saves,
    save_checkpoint,
)
from basics.data import get_batch, load_tokens
from basics.device import available_memory
from basics.metrics import MetricsLog, plot_loss_curve
from basics.model import ModelConfig, TransformerLM
from basics.nn_utils import cross_entropy
from basics.optim import lr_cosine_schedule, lr_wsd_schedule
from basics.strategy import LossFn, MicroBatch, Strategy

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "train",
    "train_step",
    "training_loss",
    "plot_loss_curve",
]


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``model`` is the architecture; every other field is a flag of scripts/train.py."""

    model: ModelConfig = field(default_factory=ModelConfig)  # the architecture
    train_data: str = ""  # 1-D token array (.npy, uint16/uint32) to train on
    val_data: str = ""  # token array for validation ("" = no validation)
    out_dir: str = "runs/default"  # checkpoints, metrics.jsonl, config.json
    batch_size: int = 32  # sequences per optimizer step (global: over accumulation and ranks)
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    max_steps: int = 1000  # optimizer steps (the schedule's length)
    stop_after: int | None = None  # stop early at this step, schedule unchanged (resume later to finish)
    learning_rate: float = 1e-3  # peak learning rate
    min_learning_rate: float = 1e-4  # floor of the schedule
    warmup_steps: int = 100  # linear warmup
    lr_schedule: Literal["cosine", "wsd"] = "cosine"  # cosine decay, or warmup-stable-decay
    decay_fraction: float = 0.2  # WSD: fraction of max_steps spent decaying
    weight_decay: float = 0.1  # AdamW decoupled weight decay
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    adam_eps: float = 1e-8  # AdamW epsilon
    grad_clip: float = 1.0  # global L2 norm clip (0 = off)
    eval_interval: int = 100  # validate every N steps (and at the end)
    eval_batches: int = 10  # batches per validation
    checkpoint_interval: int = 500  # checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2  # most recent checkpoints kept on disk
    log_interval: int = 10  # report training metrics every N steps
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    autocast: bool = True  # bf16 autocast on CUDA (ignored elsewhere)
    compile: bool = False  # torch.compile the model and its loss
    seed: int = 0  # model init and data sampling
    resume: bool = False  # continue from the latest checkpoint in out_dir (an error if there is none)
    resume_if_exists: bool = False  # continue from the latest checkpoint if there is one, else start fresh
    progress: bool = True  # tqdm progress bar (rank 0)
    wandb: bool = False  # also log to Weights & Biases (offline unless configured)
    wandb_project: str = "lm-from-scratch"  # wandb project name
    wandb_mode: Literal["offline", "online"] = "offline"  # offline runs sync later with `wandb sync`

    def __post_init__(self) -> None:
        _check_counts(self)
        _check_floats(self)
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by grad_accum_steps ({self.grad_accum_steps})"
            )
        if self.stop_after is not None and not 0 < self.stop_after <= self.max_steps:
            raise ValueError(f"stop_after must be in (0, max_steps]; got {self.stop_after}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps must be in [0, max_steps]; got {self.warmup_steps}")
        if self.lr_schedule not in ("cosine", "wsd"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'wsd'; got {self.lr_schedule!r}")


def _check_counts(config: TrainConfig) -> None:
    positive = ("batch_size", "grad_accum_steps", "max_steps", "eval_interval", "eval_batches")
    positive += ("checkpoint_interval", "log_interval", "keep_checkpoints")
    for name in positive:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"TrainConfig.{name} must be a positive integer; got {value!r}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ValueError(f"TrainConfig.seed must be a non-negative integer; got {config.seed!r}")


def _check_floats(config: TrainConfig) -> None:
    # isfinite first: every comparison with NaN is False, so `lr <= 0` alone lets lr=nan through.
    names = ("learning_rate", "min_learning_rate", "decay_fraction", "weight_decay")
    names += ("beta1", "beta2", "adam_eps", "grad_clip")
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"TrainConfig.{name} must be a finite number; got {value!r}")
    if not 0 <= config.min_learning_rate <= config.learning_rate or config.learning_rate <= 0:
        raise ValueError(
            "need 0 <= min_learning_rate <= learning_rate and learning_rate > 0; got "
            f"min_learning_rate={config.min_learning_rate}, learning_rate={config.learning_rate}"
        )
    if not 0 < config.decay_fraction <= 1:
        raise ValueError(f"decay_fraction must be in (0, 1]; got {config.decay_fraction}")
    if not (0 <= config.beta1 < 1 and 0 <= config.beta2 < 1):
        raise ValueError(f"beta1 and beta2 must be in [0, 1); got {config.beta1}, {config.beta2}")
    if config.adam_eps <= 0 or config.weight_decay < 0 or config.grad_clip < 0:
        raise ValueError(
            "need adam_eps > 0, weight_decay >= 0 and grad_clip >= 0 (0 = off); got "
            f"adam_eps={config.adam_eps}, weight_decay={config.weight_decay}, grad_clip={config.grad_clip}"
        )


@dataclass
class TrainResult:
    """What a finished run reports."""

    steps: int  # optimizer steps completed
    tokens_seen: int  # training tokens consumed
    train_loss: float  # mean training loss over the last log interval
    val_loss: float | None  # final validation loss (None without validation data)
    val_perplexity: float | None
    elapsed_s: float  # wall time of this invocation
    checkpoint: Path | None  # the final checkpoint
    metrics_path: Path  # JSONL log


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; the message names the step and the last good
    checkpoint. Scripts exit with ``exit_code`` (1: the job failed, the input was fine)."""

    exit_code = 1


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    callback: Callable[[dict], None] | None = None,
    strategy: Strategy | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.train_data``; see the module docstring."""
    job = start_job(config, strategy or Strategy(), callback)
    try:
        for step in range(job.start_step, job.last_step + 1):  # `step` optimizer steps are done
            lr = set_learning_rate(job.optimizer, step, config)
            if step > job.start_step and _due(step, config.eval_interval, job.last_step):
                run_evaluation(job, step)
            if step > job.start_step and _due(step, config.checkpoint_interval, job.last_step):
                save_training_checkpoint(job, step)
            if step == job.last_step:
                break
            loss, grad_norm = train_step(job)  # forward/backward over micro-batches, clip, AdamW
            job.stats.add(loss, grad_norm, step + 1)  # on the device: no sync until the next log
            job.progress.update()
            if _due(step + 1, config.log_interval, job.last_step):
                log_training(job, step + 1, lr)
    finally:
        job.close()
    return job.result()


def _due(step: int, interval: int, last_step: int) -> bool:
    # Every `interval` steps, and always at the end, so the last step is evaluated and saved.
    return step % interval == 0 or step == last_step


def learning_rate_at(step: int, config: TrainConfig) -> float:
    if config.lr_schedule == "wsd":
        # warmup -> stable at the peak -> decay over the last decay_fraction of the run.
        decay = max(1, round(config.max_steps * config.decay_fraction))
        stable = max(0, config.max_steps - config.warmup_steps - decay)
        return lr_wsd_schedule(
            step, config.learning_rate, config.min_learning_rate, config.warmup_steps, stable, decay
        )
    return lr_cosine_schedule(
        step, config.learning_rate, config.min_learning_rate, config.warmup_steps, config.max_steps
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, config: TrainConfig) -> float:
    lr = learning_rate_at(step, config)
    # Set before each step (not with a torch scheduler): the rate is a pure function of the step,
    # so a resumed run needs no scheduler state.
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def training_loss(model: nn.Module, x: Tensor, y: Tensor, bf16: bool = False) -> Tensor:
    """Mean next-token cross-entropy of ``model`` on inputs ``x`` and targets ``y`` (both (batch, seq)).

    This whole function is what ``compile=True`` compiles, so the loss's fp32 upcast of the
    (batch, seq, vocab) logits is fused with its reductions rather than written out in full.
    ``bf16`` runs the matmuls under bf16 autocast (weights and the loss stay fp32).
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        return cross_entropy(model(x), y)


def train_step(job: TrainJob) -> tuple[Tensor, Tensor]:
    """One optimizer step; returns the mean loss and the gradient norm before clipping, both still
    on the device (reading them would make the host wait for the GPU)."""
    config = job.config
    # Every rank draws the same global batch (so N ranks reproduce one process) and keeps its slice.
    # x, y: (batch, seq) each.
    x, y = get_batch(
        job.train_data, config.batch_size, config.model.context_length, job.device, generator=job.data_rng
    )
    job.optimizer.zero_grad(set_to_none=True)  # None, not zeros: the first backward assigns
    # Gradients accumulate over the micro-batches (each loss scaled by 1/grad_accum_steps) and,
    # under a distributed strategy, are averaged over the ranks.
    loss = job.strategy.forward_backward(job.loss_fn, _micro_batches(x, y, job))
    grad_norm = job.strategy.clip_gradients(job.model, config.grad_clip)  # global L2 norm, pre-clip
    job.optimizer.step()
    return loss, grad_norm


def _micro_batches(x: Tensor, y: Tensor, job: TrainJob) -> list[MicroBatch]:
    """Cut the global batch into ``grad_accum_steps`` micro-batches and keep this rank's slice of each:
    micro-batch m, slice r covers rows ``m * micro + r * local`` to ``... + local``."""
    micro = job.config.batch_size // job.config.grad_accum_steps  # rows per micro-batch, all ranks
    index, count = job.strategy.data_shard()  # (0, 1) in one process
    local = micro // count  # rows of it on this rank
    starts = [m * micro + index * local for m in range(job.config.grad_accum_steps)]
    return [(x[lo : lo + local], y[lo : lo + local]) for lo in starts]


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: LossFn, data: np.ndarray, config: TrainConfig, device) -> float:
    """Mean cross-entropy over ``eval_batches`` batches drawn with a fixed seed, so every evaluation
    of a run sees the same windows and never disturbs the training RNG."""
    model.eval()  # no dropout
    generator = torch.Generator().manual_seed(config.seed + 1)  # its own RNG, reseeded each time
    micro = config.batch_size // config.grad_accum_steps
    total = torch.zeros((), device=device)
    for _ in range(config.eval_batches):
        x, y = get_batch(data, micro, config.model.context_length, device, generator=generator)
        total += loss_fn(x, y)  # summed on the device: no host read per batch
    model.train()
    return total.item() / config.eval_batches  # the one host read of an evaluation


def run_evaluation(job: TrainJob, step: int) -> None:
    if job.val_data is None:
        return
    job.val_loss = evaluate(job.model, job.loss_fn, job.val_data, job.config, job.device)
    job.emit({"step": step, "val_loss": job.val_loss, "val_perplexity": _perplexity(job.val_loss)})


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # capped: an untrained model's perplexity overflows a float


def log_training(job: TrainJob, step: int, lr: float) -> None:
    """Read the device-side statistics (one sync), stop if they diverged, and report."""
    loss, grad_norm = job.stats.read(job.checkpoint)
    job.train_loss = loss
    record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm}
    record.update(tokens=step * job.tokens_per_step, elapsed_s=time.perf_counter() - job.started)
    job.progress.set_postfix(loss=f"{loss:.3f}")
    job.emit(record)


def save_training_checkpoint(job: TrainJob, step: int) -> None:
    """Write this rank's checkpoint (only if every step so far was finite), then prune old ones."""
    job.stats.check(job.checkpoint)  # never save a diverged model
    model, optimizer = job.strategy.checkpoint_state(job.model, job.optimizer)  # every rank: may gather
    path = job.strategy.checkpoint_file(job.checkpoint_dir, step)
    if path is not None:
        extra = {"data_rng": job.data_rng.get_state()}
        save_checkpoint(model, optimizer, step, path, config=asdict(job.config), extra=extra)
    if job.strategy.is_main:
        prune_checkpoints(job.checkpoint_dir, job.config.keep_checkpoints)
    job.checkpoint = checkpoint_path(job.checkpoint_dir, step)


class RunningStats:
    """The training loss and gradient norm since the last log step, kept on the device.

    ``add`` only queues tensor ops; ``read`` (at log steps) and ``check`` (before a checkpoint) are the
    only host reads. ``first_bad`` remembers the first step whose loss or gradient norm was not finite,
    so a run that diverged between two reads still reports where it happened.
    """

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)  # sum of step losses since the last read
        self.steps = 0
        self.grad_norm = torch.full((), math.nan, device=device)  # of the latest step
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def add(self, loss: Tensor, grad_norm: Tensor, step: int) -> None:
        self.loss_sum += loss
        self.steps += 1
        self.grad_norm = grad_norm.detach().float()
        finite = torch.isfinite(loss) & torch.isfinite(self.grad_norm)
        # Keep the first bad step once set; set it to `step` if this one is bad. A tensor op, not
        # an if: branching on `finite` would make the host wait for the GPU every step.
        self.first_bad = torch.where(finite | (self.first_bad >= 0), self.first_bad, step)

    def check(self, last_checkpoint: Path | None) -> None:
        """Raise :class:`TrainingDiverged` if any step so far had a non-finite loss or gradient."""
        self._raise_if_bad(int(self.first_bad.item()), last_checkpoint)

    def read(self, last_checkpoint: Path | None) -> tuple[float, float]:
        """Mean loss since the last read and the latest gradient norm (one host sync); resets the mean."""
        # One stacked transfer instead of three .item() calls.
        loss_sum, grad_norm, first_bad = torch.stack(
            [self.loss_sum, self.grad_norm, self.first_bad.float()]
        ).tolist()
        self._raise_if_bad(int(first_bad), last_checkpoint)
        mean = loss_sum / max(1, self.steps)
        self.loss_sum, self.steps = torch.zeros_like(self.loss_sum), 0
        return mean, grad_norm

    @staticmethod
    def _raise_if_bad(first_bad: int, last_checkpoint: Path | None) -> None:
        if first_bad < 0:
            return
        where = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint is not None
            else "no checkpoint was written yet"
        )
        raise TrainingDiverged(
            f"the loss or gradient norm became NaN or infinite at step {first_bad}; {where}"
        )


# ---------------------------------------------------------------------------------------------
# Set-up: everything the loop touches, checked before anything is allocated or written
# ---------------------------------------------------------------------------------------------


@dataclass
class TrainJob:
    """The state of one run (what the loop and its helpers share)."""

    config: TrainConfig
    strategy: Strategy
    device: torch.device
    model: nn.Module  # the plain model (checkpoints, clipping)
    optimizer: torch.optim.Optimizer
    loss_fn: LossFn  # (x, y) -> loss through the wrapped (and maybe compiled) model
    train_data: np.ndarray
    val_data: np.ndarray | None
    data_rng: torch.Generator  # draws the training windows; saved in every checkpoint
    out_dir: Path
    start_step: int
    last_step: int
    checkpoint: Path | None  # the newest checkpoint written (or resumed from)
    callback: Callable[[dict], None] | None
    log: MetricsLog
    progress: Any
    stats: RunningStats
    started: float = field(default_factory=time.perf_counter)
    train_loss: float = math.nan
    val_loss: float | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def tokens_per_step(self) -> int:
        return self.config.batch_size * self.config.model.context_length

    def emit(self, record: dict) -> None:
        self.log.write(record)
        if self.callback is not None and self.strategy.is_main:
            self.callback(record)

    def close(self) -> None:
        self.progress.close()
        self.log.close()
        self.strategy.close()

    def result(self) -> TrainResult:
        return TrainResult(
            steps=self.last_step,
            tokens_seen=self.last_step * self.tokens_per_step,
            train_loss=self.train_loss,
            val_loss=self.val_loss,
            val_perplexity=_perplexity(self.val_loss) if self.val_loss is not None else None,
            elapsed_s=time.perf_counter() - self.started,
            checkpoint=self.checkpoint,
            metrics_path=self.out_dir / "metrics.jsonl",
        )


def start_job(config: TrainConfig, strategy: Strategy, callback: Callable[[dict], None] | None) -> TrainJob:
    """Check the data, the memory and the run directory, then build model, optimizer and state."""
    train_data, val_data = load_training_data(config)
    device = strategy.setup(config.device)
    check_memory(config.model, device)
    out_dir = Path(config.out_dir)
    resumed, skipped = find_resume_point(config, strategy, out_dir / "checkpoints")
    micro = config.batch_size // config.grad_accum_steps
    if micro % strategy.data_shard()[1]:
        raise ValueError(
            f"micro-batch {micro} (batch_size / grad_accum_steps) must divide by {strategy.data_shard()[1]} ranks"
        )

    torch.manual_seed(config.seed)
    model = TransformerLM(config.model).to(device)
    wrapped = strategy.wrap_model(model)  # DDP broadcasts rank 0's weights; FSDP/TP/PP cut them up
    optimizer = strategy.build_optimizer(
        wrapped, lr=config.learning_rate, betas=(config.beta1, config.beta2), eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )  # fmt: skip
    data_rng = torch.Generator().manual_seed(config.seed)
    start_step, checkpoint = 0, None
    if resumed is not None:
        checkpoint, payload = resumed
        start_step = strategy.load_checkpoint(payload, model, optimizer, name=str(checkpoint))
        data_rng.set_state(payload["extra"]["data_rng"])
    if strategy.is_main:
        prepare_run_directory(out_dir, config)
    bf16 = config.autocast and device.type == "cuda"

    def standard_loss(x: Tensor, y: Tensor) -> Tensor:
        return training_loss(wrapped, x, y, bf16)

    loss_fn = strategy.loss_fn(wrapped, standard_loss)

    last_step = config.stop_after or config.max_steps
    show = config.progress and strategy.is_main
    job = TrainJob(
        config, strategy, device, model, optimizer, torch.compile(loss_fn) if config.compile else loss_fn,
        train_data, val_data, data_rng, out_dir, start_step, last_step, checkpoint, callback,
        MetricsLog(out_dir / "metrics.jsonl", strategy.is_main, config, start_step),
        tqdm(total=config.max_steps, initial=start_step, disable=not show, desc="train"), RunningStats(device),
    )  # fmt: skip
    for message in skipped:
        job.emit({"step": start_step, "warning": f"skipped an unreadable checkpoint: {message}"})
    model.train()
    return job


def load_training_data(config: TrainConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Open both token arrays (memory-mapped) and check them before any model is built: each holds at
    least one window of ``context_length + 1`` tokens, and every id is in ``[0, vocab_size)`` (an id
    out of range would index past the embedding table, on a GPU as an opaque device-side assert)."""
    if not config.train_data:
        raise ValueError("no training data: set train_data (--train-data, or --data)")
    train_data = _checked_tokens(config.train_data, "training", config.model)
    val_data = _checked_tokens(config.val_data, "validation", config.model) if config.val_data else None
    return train_data, val_data


def _checked_tokens(path: str, what: str, model: ModelConfig) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} data not found: {path!r}")
    tokens = load_tokens(path)
    if len(tokens) <= model.context_length + 1:
        raise ValueError(
            f"{what} data {path} has {len(tokens)} tokens; need more than context_length + 1 = "
            f"{model.context_length + 1}"
        )
    low, high = int(tokens.min()), int(tokens.max())  # one pass each over the (memory-mapped) file
    if low < 0 or high >= model.vocab_size:
        bad = low if low < 0 else high
        raise ValueError(
            f"{what} data {path} holds token id {bad}, outside [0, vocab_size = {model.vocab_size})"
        )
    return tokens


BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW's two moments


def check_memory(model: ModelConfig, device: torch.device) -> None:
    """Refuse a model whose weights, gradients and AdamW state alone exceed the device's free memory,
    before allocating it (activations come on top and are not counted)."""
    needed = BYTES_PER_PARAMETER * model.num_parameters()
    free = available_memory(device)
    if free is not None and needed > free:
        raise ValueError(
            f"the model has {model.num_parameters():,} parameters: about {needed / 1e9:.1f} GB for weights, "
            f"gradients and AdamW state, but {device} has {free / 1e9:.1f} GB free; make it smaller "
            f"(vocab_size {model.vocab_size}, d_model {model.d_model}, num_layers {model.num_layers})"
        )


def find_resume_point(
    config: TrainConfig, strategy: Strategy, directory: Path
) -> tuple[tuple[Path, dict] | None, list[str]]:
    """``((checkpoint, payload) or None, skipped)``: the newest readable checkpoint to resume from.

    Without ``resume`` a directory that already holds checkpoints is an error (a fresh run would mix
    its checkpoints with the old run's); with ``resume`` an empty one is (a mistyped ``out_dir`` would
    silently start over) unless ``resume_if_exists``.
    """
    if not (config.resume or config.resume_if_exists):
        existing = latest_checkpoint(directory)
        if existing is not None:
            raise ValueError(
                f"{config.out_dir} already holds a run ({existing.name}); pass resume=True (--resume) to "
                "continue it, or choose another out_dir"
            )
        return None, []
    path, payload, skipped = read_latest_checkpoint(directory)
    if path is None:
        if config.resume_if_exists and not skipped:
            return None, []
        found = f" ({len(skipped)} unreadable: {skipped[0]})" if skipped else ""
        raise FileNotFoundError(
            f"resume: no readable checkpoint in {directory}{found}; check out_dir, or use "
            "resume_if_exists (--resume-if-exists) to start fresh when there is none"
        )
    own = strategy.checkpoint_file(directory, int(payload["iteration"]))
    if own is not None and own != path:  # this rank's own part (e.g. its optimizer shard)
        payload = read_checkpoint(own)
    return (path, payload), skipped


def prepare_run_directory(out_dir: Path, config: TrainConfig) -> None:
    """Create the run directory, record the config, and delete temp files of interrupted saves."""
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    remove_partial_saves(out_dir / "checkpoints")
    (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
