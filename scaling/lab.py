"""A budgeted experiment lab: submit a config and a FLOPs budget, get a final loss back.

Handout section "The training API". The course gives students a remote API that trains a model for
a given compute budget and charges it against a total they must not exceed; this module is the same
thing built locally on real training (unit 1's Transformer on the built-in corpus, or any tokenized
data):

    request (d_model, num_layers, num_heads, batch_size, learning_rate, train_flops, seed)
      -> validate -> charge the SQLite ledger -> train -> (train loss, validation loss), cached

Compute convention (Hoffmann et al. 2022): ``train_flops = C = 6·N·D`` with ``N`` *all* parameters
(scaling/flops.py), so a run trains on ``D = C / (6N)`` tokens, rounded to whole steps of
``batch_size × context_length`` tokens. The exact matmul count of each run (attention scores and
output head included) is recorded beside it. Why all parameters, not Kaplan et al.'s non-embedding
count: in models this small the embedding and output head are most of the weights and the head most
of the compute (a width-16 model has 3K block parameters beside 16K embedding and head ones), so
leaving them out makes a small model's compute look free and pulls every optimum to the smallest
size; Pearce & Song (2024) trace Kaplan's and Chinchilla's different exponents to this very choice.

The ledger (scaling/ledger.py) charges each request once, never past the total budget, and caches
its result; this module validates a request, plans its steps and trains it.

Simplifications: a run's schedule is fixed by the lab (:func:`train_model`: warmup over the first
10% of steps, cosine decay to a tenth of the peak); ``d_ff`` follows ``d_model`` (8/3 of it, a
multiple of 16). The default corpus (stdlib docstrings and sources, 6.7M tokens at a 512-token
vocabulary) is large enough that the sweep's runs see it at most about once; the 100x check (1e14,
33M tokens at the default sweep's N_opt) sees it five times, just past the four epochs that
Muennighoff et al. (2023) found cost little: a check run there may land a little high for that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scaling.flops import count_parameters, training_flops
from scaling.ledger import LabRequest, LabResult, Ledger


@dataclass(frozen=True)
class LabConfig:
    """The lab's fixed settings: everything a request does not choose."""

    db_path: str = "runs/scaling_lab/ledger.sqlite"  # the SQLite ledger (budget, charges, results)
    total_budget: float = 3e14  # FLOPs (6ND) a student may spend in all; fixed when the ledger is created
    vocab_size: int = 512  # tokenizer size for the built-in corpus
    context_length: int = 64  # tokens per training sequence
    train_data: str = ""  # token array (.npy); "" = the built-in corpus tokenized with vocab_size
    val_data: str = ""  # validation token array; "" = the built-in corpus's validation split
    include_source: bool = (
        True  # built-in corpus: stdlib docstrings and sources (6.7M tokens), not docstrings only
    )
    out_dir: str = "runs/scaling_lab"  # fits, plots and submissions go under here
    device: str = "cpu"  # training device
    num_threads: int = 1  # torch CPU threads per run (1 avoids oversubscribing shared cores)
    checkpoint_seconds: float = 60.0  # a run saves its state this often (0 = never) and resumes from it
    val_windows: int = 256  # validation windows (evenly spaced, the same for every run) for the final loss
    min_steps: int = 5  # a request that buys fewer optimizer steps is refused before charging
    max_train_flops: float = 1e16  # largest single request
    max_d_model: int = 1024  # limits on the shape a request may ask for
    max_num_layers: int = 24
    max_batch_size: int = 512

    def __post_init__(self) -> None:
        counts = ("vocab_size", "context_length", "num_threads", "val_windows", "min_steps")
        for name in (*counts, "max_d_model", "max_num_layers", "max_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LabConfig.{name} must be a positive integer; got {value!r}")
        for name in ("total_budget", "max_train_flops"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"LabConfig.{name} must be a finite number > 0; got {value!r}")
        seconds = self.checkpoint_seconds
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"LabConfig.checkpoint_seconds must be a finite number >= 0; got {seconds!r}")


# ----------------------------------------------------------------------------------------------
# Validation and planning


@dataclass(frozen=True)
class RunPlan:
    """How a validated request will be trained."""

    parameters: int  # all parameters: the N in C = 6ND
    non_embedding_parameters: int  # Kaplan et al.'s N, for reference
    steps: int
    tokens: int  # steps × batch_size × context_length
    exact_flops: float  # matmul count for those tokens (3 × forward)


def model_config_for(request: LabRequest, config: LabConfig):
    """Unit 1's ``ModelConfig`` for a request (the lab's vocabulary and context, default architecture)."""
    from basics.model import ModelConfig

    return ModelConfig(
        vocab_size=config.vocab_size,
        context_length=config.context_length,
        d_model=request.d_model,
        num_layers=request.num_layers,
        num_heads=request.num_heads,
        d_ff=16
        * math.ceil(
            request.d_model * 8 / 3 / 16
        ),  # SwiGLU's 8/3·d; ModelConfig rounds to 64, too coarse here
        norm_impl="torch",
        attention_impl="sdpa",
        rope_impl="complex",
    )


def result_settings(config: LabConfig) -> dict:
    """The lab fields a run's loss depends on (besides the request): a ledger is bound to them."""
    keys = ("vocab_size", "context_length", "train_data", "val_data", "include_source", "val_windows")
    return {k: getattr(config, k) for k in keys}


def plan_run(request: LabRequest, config: LabConfig) -> RunPlan:
    """Validate ``request`` and work out its steps; raises ``ValueError`` naming the bad field."""
    for name, low, high in (
        ("d_model", 8, config.max_d_model),
        ("num_layers", 1, config.max_num_layers),
        ("num_heads", 1, 64),
        ("batch_size", 1, config.max_batch_size),
    ):
        value = getattr(request, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if request.d_model % request.num_heads or (request.d_model // request.num_heads) % 2:
        raise ValueError(
            f"d_model={request.d_model} must split into num_heads={request.num_heads} heads of even size (RoPE)"
        )
    lr = request.learning_rate
    if not isinstance(lr, int | float) or not math.isfinite(lr) or not 0 < lr <= 1:
        raise ValueError(f"learning_rate must be in (0, 1], got {lr!r}")
    flops = request.train_flops
    if (
        not isinstance(flops, int | float)
        or not math.isfinite(flops)
        or not 0 < flops <= config.max_train_flops
    ):
        raise ValueError(f"train_flops must be in (0, {config.max_train_flops:.3g}], got {flops!r}")
    model = model_config_for(request, config)
    counts = count_parameters(model)
    tokens_per_step = request.batch_size * config.context_length
    steps = round(flops / (6 * counts.total) / tokens_per_step)
    if steps < config.min_steps:
        raise ValueError(
            f"train_flops={flops:.3g} buys {steps} steps of {tokens_per_step} tokens for N={counts.total:,}; "
            f"the lab needs at least {config.min_steps}"
        )
    tokens = steps * tokens_per_step
    return RunPlan(counts.total, counts.non_embedding, steps, tokens, training_flops(model, tokens))


# ----------------------------------------------------------------------------------------------
# Running requests

Runner = Callable[[LabRequest, RunPlan], tuple[float, float]]  # -> (train loss, validation loss)


class TrainingRunner:
    """The default runner: :func:`train_model` on the lab's data (the built-in corpus unless given).

    Picklable, so a sweep can hand it to worker processes; resolve :meth:`data` first so the
    workers do not all tokenize the corpus at once."""

    def __init__(self, config: LabConfig, progress: bool = False):
        self.config = config
        self.progress = progress  # a progress bar on stderr (for long single runs, not sweeps)
        self._data: tuple[str, str] | None = None

    def data(self) -> tuple[str, str]:
        """(train, validation) token array paths; tokenizes the built-in corpus once if needed."""
        if self._data is None:
            c = self.config
            if c.train_data:
                for path in (c.train_data, c.val_data):
                    if path and not Path(path).is_file():
                        raise FileNotFoundError(f"token array not found: {path}")
                self._data = (c.train_data, c.val_data or c.train_data)
            else:
                from basics.corpus import build_corpus
                from basics.prepare import prepare_data

                prepared = prepare_data(c.vocab_size, build_corpus(include_source=c.include_source))
                self._data = (str(prepared.train_tokens), str(prepared.val_tokens))
        return self._data

    def __call__(self, request: LabRequest, plan: RunPlan) -> tuple[float, float]:
        import torch

        from basics.data import load_tokens

        train_path, val_path = self.data()
        val = validation_windows(load_tokens(val_path), self.config.val_windows, self.config.context_length)
        threads = torch.get_num_threads()
        torch.set_num_threads(self.config.num_threads)
        c = self.config
        checkpoint = checkpoint_path(request, c) if c.checkpoint_seconds > 0 else None
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=plan.steps, desc=f"d_model={request.d_model}", unit="step", dynamic_ncols=True)
        try:
            return train_model(
                model_config_for(request, c),
                request,
                plan.steps,
                load_tokens(train_path),
                val,
                c.device,
                checkpoint=checkpoint,
                checkpoint_seconds=c.checkpoint_seconds,
                on_step=None if bar is None else _advance(bar),
            )
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()


def _advance(bar) -> Callable[[int, float], None]:
    def on_step(step: int, loss: float) -> None:
        bar.n = step + 1
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        bar.update(0)

    return on_step


def checkpoint_path(request: LabRequest, config: LabConfig) -> Path:
    """Where a run of ``request`` keeps its resumable state: named by a hash of the request and the
    lab settings its loss depends on, so a checkpoint is only ever resumed by the same run."""
    import hashlib
    import json

    key = json.dumps({"request": request.key(), "settings": result_settings(config)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return Path(config.out_dir) / "checkpoints" / f"run-{digest}.pt"


def validation_windows(tokens, count: int, context_length: int):
    """``count`` windows (inputs, targets) at evenly spaced starts: fixed by the data alone, so every run
    of a lab is scored on exactly the same tokens whatever its batch size or seed."""
    import numpy as np
    import torch

    if len(tokens) < context_length + 1:
        raise ValueError(f"validation data has {len(tokens)} tokens, need at least {context_length + 1}")
    starts = np.linspace(0, len(tokens) - context_length - 1, count).astype(np.int64)
    windows = np.stack([np.asarray(tokens[s : s + context_length + 1], dtype=np.int64) for s in starts])
    windows = torch.from_numpy(windows)  # (count, context_length + 1)
    return windows[:, :-1], windows[:, 1:]


def train_model(
    model_config,
    request: LabRequest,
    steps: int,
    train_tokens,
    val,
    device: str = "cpu",
    checkpoint: Path | None = None,
    checkpoint_seconds: float = 60.0,
    on_step: Callable[[int, float], None] | None = None,
):
    """Train unit 1's Transformer for ``steps`` AdamW steps and return (train loss, validation loss).

    The lab's schedule: linear warmup over the first 10% of steps, cosine decay to a tenth of the
    peak by the run's own last step; gradients clipped at norm 1. The train loss is the mean over the
    last 10% of steps. A run whose loss or gradient stops being finite ends at once with (NaN, NaN),
    a real outcome of a bad learning rate (the ledger stores NULL); unlike unit 1's loops it does not
    raise ``TrainingDiverged``: a sweep over learning rates must record a diverged point and go on.

    ``checkpoint``: a file the run saves its whole state to (weights, optimizer, data-order generator,
    step) every ``checkpoint_seconds`` (0: every step); a run that finds one there resumes from it and
    ends exactly as if it had never stopped, and a finished run deletes it. ``on_step(step, loss)`` is
    called after each step (progress).

    Not unit 1's ``train``: that loop scores validation on batches drawn by the run's own seed; every
    lab run must be scored on the same windows (:func:`validation_windows`).
    """
    import torch

    from basics.data import get_batch
    from basics.model import TransformerLM
    from basics.optim import AdamW, lr_cosine_schedule

    torch.manual_seed(request.seed)
    model = TransformerLM.from_config(model_config).to(device)
    optimizer = AdamW(
        model.parameters(), lr=request.learning_rate, betas=(0.9, 0.95), weight_decay=0.1, foreach=True
    )
    generator = torch.Generator().manual_seed(request.seed)
    warmup, peak, tail, first = max(1, steps // 10), request.learning_rate, [], 0
    if checkpoint is not None and checkpoint.is_file():
        first, tail = _resume(checkpoint, request, steps, model, optimizer, generator)
    saved = time.monotonic()
    for step in range(first, steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_cosine_schedule(step, peak, peak / 10, warmup, steps)
        x, y = get_batch(
            train_tokens, request.batch_size, model_config.context_length, device, generator=generator
        )
        loss = _step(model, optimizer, x, y)
        if loss is None:
            return _finish(checkpoint, (math.nan, math.nan))
        if step >= steps - max(1, steps // 10):
            tail.append(loss)
        if checkpoint is not None and step + 1 < steps and time.monotonic() - saved >= checkpoint_seconds:
            _save_state(checkpoint, request, step + 1, steps, model, optimizer, generator, tail)
            saved = time.monotonic()
        if on_step is not None:
            on_step(step, loss)
    return _finish(checkpoint, (sum(tail) / len(tail), evaluate_windows(model, val, device)))


def _step(model, optimizer, x, y) -> float | None:
    """One clipped AdamW step on the batch; ``None``, and no step, when the loss or the gradient is
    not finite (stop before the step spoils the weights)."""
    from basics.nn_utils import clip_gradients, cross_entropy

    loss = cross_entropy(model(x), y)  # (batch, seq) -> mean next-token loss
    if not math.isfinite(loss.item()):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if not math.isfinite(float(clip_gradients(model.parameters(), 1.0))):
        return None
    optimizer.step()
    return loss.item()


def _save_state(path: Path, request, step, steps, model, optimizer, generator, tail) -> None:
    """Write a run's resumable state atomically (a crash mid-write leaves the previous one)."""
    import torch

    state = {
        "request": request.key(),
        "steps": steps,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "tail": list(tail),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)


def _resume(path: Path, request, steps, model, optimizer, generator) -> tuple[int, list[float]]:
    """Load the state :func:`_save_state` wrote; one from another run is an error, not reused."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"checkpoint {path} cannot be read ({error}); delete it to start the run over"
        ) from None
    if state.get("request") != request.key() or state.get("steps") != steps:
        raise ValueError(f"checkpoint {path} belongs to another run; delete it to start this one over")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return int(state["step"]), [float(x) for x in state["tail"]]


def _finish(checkpoint: Path | None, losses: tuple[float, float]) -> tuple[float, float]:
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return losses


def evaluate_windows(model, windows, device: str = "cpu", chunk: int = 64) -> float:
    """Mean next-token loss of ``model`` over the (inputs, targets) ``windows``."""
    import torch

    from basics.nn_utils import cross_entropy

    x, y = windows
    model.eval()
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(x), chunk):
            xb, yb = x[lo : lo + chunk].to(device), y[lo : lo + chunk].to(device)
            total += cross_entropy(model(xb), yb).item() * len(xb)  # (chunk, seq) windows
    model.train()
    return total / len(x)


def query(request: LabRequest, ledger: Ledger, config: LabConfig, runner: Runner | None = None) -> LabResult:
    """Validate, charge (once), train (unless cached) and return the result.

    A cached result costs nothing; a request charged earlier but never finished runs again free.
    Raises ``ValueError`` for an invalid request and :class:`BudgetExceeded` when it does not fit.
    """
    plan = plan_run(request, config)
    ledger.bind(result_settings(config))
    hit = ledger.cached(request)
    if hit is not None:
        return hit
    charged = ledger.charge(request)
    runner = runner if runner is not None else TrainingRunner(config)
    started = time.perf_counter()
    train_loss, val_loss = runner(request, plan)
    result = LabResult(
        request,
        float(train_loss),
        float(val_loss),
        plan.parameters,
        plan.tokens,
        plan.steps,
        plan.exact_flops,
        time.perf_counter() - started,
        cached=False,
        charged=charged,
    )
    ledger.record(result)
    return result
