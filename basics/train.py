"""The training job: a loop a student can read in one screen.

Follows the assignment 1 handout (section 5, "Training loop"): sample random windows of a tokenized
corpus, forward, cross-entropy, backward with gradient accumulation, global-norm clipping, AdamW
with a warmup + cosine (or warmup-stable-decay) schedule; periodic validation loss and perplexity;
checkpoints every N steps and at the end, written atomically so an interrupted run resumes from the
last one with ``resume=True`` and continues bit for bit (on the CPU).

It also runs under ``torchrun`` (unit 2): ``ddp`` picks the data-parallel wrapper from
``systems.ddp`` and ``shard_optimizer`` shards AdamW's state; every rank draws the same global batch
and trains on its own slice of it, so N processes reproduce a single-process run on the same global
batch; only rank 0 logs and writes the model checkpoint.

Library code: it returns a :class:`TrainResult` and calls ``callback(metrics)`` for every log
line; ``scripts/train.py`` does the printing.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from basics.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from basics.data import check_device, get_batch, load_tokens
from basics.model import ModelConfig, TransformerLM
from basics.nn_utils import clip_gradients, cross_entropy
from basics.optim import AdamW, lr_cosine_schedule, lr_wsd_schedule


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
    compile: bool = False  # torch.compile the model
    seed: int = 0  # model init and data sampling
    resume: bool = False  # continue from the latest checkpoint in out_dir
    progress: bool = True  # tqdm progress bar (rank 0)
    wandb: bool = False  # also log to Weights & Biases (offline unless configured)
    wandb_project: str = "lm-from-scratch"  # wandb project name
    wandb_mode: Literal["offline", "online"] = "offline"  # offline runs sync later with `wandb sync`
    ddp: Literal["none", "naive", "overlap", "bucketed", "torch"] = (
        "none"  # data-parallel variant under torchrun
    )
    bucket_size_mb: float = 25.0  # bucket size for ddp=bucketed
    shard_optimizer: bool = False  # shard AdamW state across ranks (systems.sharded_optimizer)

    def __post_init__(self) -> None:
        positive = ("batch_size", "grad_accum_steps", "max_steps", "eval_interval", "eval_batches")
        positive += ("checkpoint_interval", "log_interval", "keep_checkpoints")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive; got {getattr(self, name)}")
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by grad_accum_steps ({self.grad_accum_steps})"
            )
        if self.stop_after is not None and not 0 < self.stop_after <= self.max_steps:
            raise ValueError(f"stop_after must be in (0, max_steps]; got {self.stop_after}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps must be in [0, max_steps]; got {self.warmup_steps}")
        if (
            self.learning_rate <= 0
            or self.min_learning_rate < 0
            or self.min_learning_rate > self.learning_rate
        ):
            raise ValueError("need 0 <= min_learning_rate <= learning_rate and learning_rate > 0")
        if not 0 < self.decay_fraction <= 1:
            raise ValueError(f"decay_fraction must be in (0, 1]; got {self.decay_fraction}")


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
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda, then mps, then cpu; any other name must be usable here (else a ValueError)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return check_device(name)


def learning_rate_at(step: int, config: TrainConfig) -> float:
    if config.lr_schedule == "wsd":
        decay = max(1, round(config.max_steps * config.decay_fraction))
        stable = max(0, config.max_steps - config.warmup_steps - decay)
        return lr_wsd_schedule(
            step, config.learning_rate, config.min_learning_rate, config.warmup_steps, stable, decay
        )
    return lr_cosine_schedule(
        step, config.learning_rate, config.min_learning_rate, config.warmup_steps, config.max_steps
    )


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, data: np.ndarray, config: TrainConfig, device: torch.device, autocast
) -> float:
    """Mean cross-entropy over ``eval_batches`` batches drawn with a fixed seed, so every evaluation
    of a run sees the same windows and never disturbs the training RNG."""
    model.eval()
    generator = torch.Generator().manual_seed(config.seed + 1)
    micro = config.batch_size // config.grad_accum_steps
    losses = []
    for _ in range(config.eval_batches):
        x, y = get_batch(data, micro, config.model.context_length, str(device), generator=generator)
        with autocast():
            losses.append(cross_entropy(model(x), y).item())
    model.train()
    return float(np.mean(losses))


def _checkpoint_path(directory: Path, step: int, rank: int) -> Path:
    """Rank 0 writes the conventional name; with a sharded optimizer every other rank writes its own
    shard of the optimizer state beside it (``checkpoint_N.rankR.pt``, ignored by latest_checkpoint)."""
    path = checkpoint_path(directory, step)
    return path if rank == 0 else path.with_suffix(f".rank{rank}.pt")


def _prune_checkpoints(directory: Path, keep: int) -> None:
    steps = sorted({int(p.name.split("_")[1].split(".")[0]) for p in directory.glob("checkpoint_*.pt")})
    for old in steps[:-keep]:
        for path in directory.glob(checkpoint_path(directory, old).stem + "*.pt"):
            path.unlink(missing_ok=True)


class _MetricsLog:
    """Append-only JSONL metrics (rank 0), mirrored to wandb when asked."""

    def __init__(self, path: Path, enabled: bool, config: TrainConfig):
        self.path, self.enabled, self.wandb = path, enabled, None
        if enabled and config.wandb:
            import wandb

            self.wandb = wandb.init(
                project=config.wandb_project,
                mode=config.wandb_mode,
                config=asdict(config),
                dir=str(path.parent),
            )

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(record, step=record.get("step"))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _build_optimizer(model: torch.nn.Module, config: TrainConfig):
    kwargs = dict(
        lr=config.learning_rate,
        betas=(config.beta1, config.beta2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    if config.shard_optimizer:
        from systems.sharded_optimizer import ShardedOptimizer

        return ShardedOptimizer(model.parameters(), AdamW, **kwargs)
    return AdamW(model.parameters(), **kwargs)


def train(config: TrainConfig, callback: Callable[[dict], None] | None = None) -> TrainResult:
    """Train ``config.model`` on ``config.train_data``; see the module docstring."""
    if not config.train_data or not Path(config.train_data).is_file():
        raise FileNotFoundError(f"training data not found: {config.train_data!r}")
    if config.val_data and not Path(config.val_data).is_file():
        raise FileNotFoundError(f"validation data not found: {config.val_data!r}")

    dist = None
    if config.ddp != "none" or config.shard_optimizer:
        from systems.ddp import init_distributed

        dist = init_distributed(config.device)
    rank = dist.rank if dist is not None else 0
    world_size = dist.world_size if dist is not None else 1
    device = dist.device if dist is not None and dist.is_distributed else resolve_device(config.device)
    micro_batch = config.batch_size // config.grad_accum_steps
    if micro_batch % world_size:
        raise ValueError(
            f"micro-batch {micro_batch} (batch_size / grad_accum_steps) must divide by world size {world_size}"
        )
    local_batch = micro_batch // world_size

    out_dir = Path(config.out_dir)
    is_main = rank == 0
    if is_main:
        (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))

    train_data = load_tokens(config.train_data)
    val_data = load_tokens(config.val_data) if config.val_data else None
    context = config.model.context_length
    if len(train_data) <= context + 1:
        raise ValueError(
            f"training data has {len(train_data)} tokens; need more than context_length + 1 = {context + 1}"
        )
    if train_data.max(initial=0) >= config.model.vocab_size:
        raise ValueError(
            f"training data holds token id {int(train_data.max())} >= vocab_size {config.model.vocab_size}"
        )

    torch.manual_seed(config.seed)
    model = TransformerLM(config.model).to(device)
    optimizer = _build_optimizer(model, config)
    data_rng = torch.Generator().manual_seed(config.seed)

    start_step = 0
    checkpoint_dir = out_dir / "checkpoints"
    last_checkpoint = latest_checkpoint(checkpoint_dir) if config.resume else None
    if last_checkpoint is not None:
        own = last_checkpoint
        if rank != 0 and config.shard_optimizer:
            own = _checkpoint_path(checkpoint_dir, read_checkpoint(last_checkpoint)["iteration"], rank)
        start_step = load_checkpoint(own, model, optimizer, restore_rng=True)
        data_rng.set_state(read_checkpoint(own)["extra"]["data_rng"])

    wrapped = model
    if dist is not None and config.ddp != "none":
        from systems.ddp import wrap_model

        wrapped = wrap_model(model, config.ddp, config.bucket_size_mb)
    forward = torch.compile(wrapped) if config.compile else wrapped
    use_bf16 = config.autocast and device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    log = _MetricsLog(out_dir / "metrics.jsonl", is_main, config)
    tokens_per_step = config.batch_size * context
    last_step = config.stop_after or config.max_steps
    progress = tqdm(
        total=config.max_steps, initial=start_step, disable=not (config.progress and is_main), desc="train"
    )
    started = time.perf_counter()
    recent: list[float] = []
    train_loss, val_loss = float("nan"), None
    checkpoint = last_checkpoint

    def save(step: int) -> Path:
        path = _checkpoint_path(checkpoint_dir, step, rank)
        if is_main or config.shard_optimizer:
            save_checkpoint(
                model,
                optimizer,
                step,
                path,
                config=asdict(config),
                extra={"data_rng": data_rng.get_state()},
            )
        if is_main:
            _prune_checkpoints(checkpoint_dir, config.keep_checkpoints)
        return path

    model.train()
    for step in range(start_step, last_step):
        lr = learning_rate_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr

        # Every rank draws the same global batch and keeps its own slice of each micro-batch.
        x_all, y_all = get_batch(train_data, config.batch_size, context, str(device), generator=data_rng)
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(config.grad_accum_steps):
            lo = micro * micro_batch + rank * local_batch
            x, y = x_all[lo : lo + local_batch], y_all[lo : lo + local_batch]
            # Under DDP only the last micro-batch communicates; the others accumulate locally.
            last = micro == config.grad_accum_steps - 1
            sync = contextlib.nullcontext() if last or not hasattr(wrapped, "no_sync") else wrapped.no_sync()
            with sync:
                with autocast():
                    loss = cross_entropy(forward(x), y) / config.grad_accum_steps
                loss.backward()
            loss_sum += loss.item()
        if hasattr(wrapped, "finish_gradient_synchronization"):
            wrapped.finish_gradient_synchronization()
        if not math.isfinite(loss_sum):
            progress.close()
            log.close()
            where = (
                f"the last good checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
            )
            raise TrainingDiverged(f"loss became {loss_sum} at step {step + 1}; {where}")
        grad_norm = (
            clip_gradients(model.parameters(), config.grad_clip) if config.grad_clip > 0 else float("nan")
        )
        optimizer.step()

        done = step + 1
        recent.append(loss_sum)
        progress.update(1)
        metrics = None
        if done % config.log_interval == 0 or done == last_step:
            metrics = {"step": done, "loss": float(np.mean(recent)), "lr": lr, "grad_norm": float(grad_norm)}
            metrics["tokens"] = done * tokens_per_step
            metrics["elapsed_s"] = time.perf_counter() - started
            progress.set_postfix(loss=f"{metrics['loss']:.3f}")
        if val_data is not None and (done % config.eval_interval == 0 or done == last_step):
            val_loss = evaluate(forward, val_data, config, device, autocast)
            metrics = metrics or {"step": done}
            metrics.update(val_loss=val_loss, val_perplexity=math.exp(min(val_loss, 50.0)))
        if metrics is not None:
            log.write(metrics)
            if callback is not None and is_main:
                callback(metrics)
            if "loss" in metrics:
                train_loss, recent = metrics["loss"], []
        if done % config.checkpoint_interval == 0 or done == last_step:
            checkpoint = save(done)

    progress.close()
    log.close()
    if dist is not None:
        from systems.ddp import cleanup_distributed

        cleanup_distributed()
    return TrainResult(
        steps=last_step,
        tokens_seen=last_step * tokens_per_step,
        train_loss=train_loss,
        val_loss=val_loss,
        val_perplexity=math.exp(min(val_loss, 50.0)) if val_loss is not None else None,
        elapsed_s=time.perf_counter() - started,
        checkpoint=checkpoint,
        metrics_path=out_dir / "metrics.jsonl",
    )


# Named starting points for scripts/train.py; flags override any field.
PRESETS: dict[str, TrainConfig] = {
    # A few minutes on a 2-core CPU: the default of `python scripts/train.py`.
    "cpu": TrainConfig(
        model=ModelConfig(
            vocab_size=2048,
            context_length=128,
            d_model=128,
            num_layers=4,
            num_heads=4,
            norm_impl="torch",
            attention_impl="sdpa",
            rope_impl="complex",  # eager: the complex multiply is the fastest RoPE
        ),
        out_dir="runs/cpu",
        batch_size=32,
        max_steps=300,
        learning_rate=3e-3,
        min_learning_rate=3e-4,
        warmup_steps=50,
        eval_interval=100,
        eval_batches=8,
        checkpoint_interval=100,
        log_interval=10,
    ),
    # The course's TinyStories run: 128 x 256 x 10,000 steps = 327.68M tokens; one H100, bf16, compiled.
    "tinystories": TrainConfig(
        model=ModelConfig(
            vocab_size=10_000,
            context_length=256,
            d_model=512,
            num_layers=4,
            num_heads=16,
            d_ff=1344,
            rope_theta=10_000.0,
            norm_impl="torch",
            attention_impl="sdpa",
            rope_impl="reference",  # real arithmetic: torch.compile fuses it (complex ops it cannot)
        ),
        out_dir="runs/tinystories",
        batch_size=128,
        max_steps=10_000,
        learning_rate=3e-3,
        min_learning_rate=3e-4,
        warmup_steps=500,
        eval_interval=500,
        eval_batches=20,
        checkpoint_interval=2000,
        log_interval=50,
        compile=True,
    ),
    # OpenWebText: 32K vocabulary, context 512.
    "owt": TrainConfig(
        model=ModelConfig(
            vocab_size=32_000,
            context_length=512,
            d_model=768,
            num_layers=12,
            num_heads=12,
            d_ff=2048,
            rope_theta=10_000.0,
            norm_impl="torch",
            attention_impl="sdpa",
            rope_impl="reference",  # real arithmetic: torch.compile fuses it (complex ops it cannot)
        ),
        out_dir="runs/owt",
        batch_size=64,
        max_steps=20_000,
        learning_rate=2e-3,
        min_learning_rate=2e-4,
        warmup_steps=1000,
        eval_interval=1000,
        eval_batches=20,
        checkpoint_interval=2000,
        log_interval=50,
        compile=True,
    ),
}

# The dataset each preset trains on when the user gives no --data.
PRESET_DATASETS = {"cpu": None, "tinystories": "tinystories", "owt": "openwebtext"}


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path) -> Path:
    """Training and validation loss against step from a run's metrics.jsonl, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    train_points = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val_points = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    for points, label in ((train_points, "train"), (val_points, "validation")):
        if points:
            ax.plot(*zip(*points), label=label, marker="o" if label == "validation" else None)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)
