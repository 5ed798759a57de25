"""A budgeted experiment lab: submit a config and a FLOPs budget, get a final loss back.

Handout section "The training API". The course gives students a remote API that trains a model for
a given compute budget and charges it against a total they must not exceed; this module is the same
thing built locally on real training (unit 1's ``train`` on the built-in corpus, or any tokenized
data):

    request (d_model, num_layers, num_heads, batch_size, learning_rate, train_flops)
      -> validate -> charge the SQLite ledger -> train -> (train loss, validation loss), cached

Compute convention (Kaplan et al. 2020; Hoffmann et al. 2022): ``train_flops = C = 6·N·D`` with
``N`` the non-embedding parameters (scaling/flops.py), so a run trains on ``D = C / (6N)`` tokens,
rounded to whole steps of ``batch_size × context_length`` tokens. The exact matmul count of each run
(which also pays for attention scores and the output head) is recorded beside it.

The ledger (one SQLite file) keeps three promises, each kept inside a ``BEGIN IMMEDIATE``
transaction so that several processes can share one file:
- the total budget is never exceeded: a request that does not fit is refused with a
  :class:`BudgetExceeded` naming the remaining budget;
- a request is charged at most once: re-querying a finished config returns its cached result
  for free, and a config that was charged but never finished (an interrupted sweep) is run again
  without a second charge -- so an interrupted sweep resumes by simply running it again;
- results are cached by the request's canonical key, and a ledger is bound to the lab settings
  the losses depend on (data, vocabulary, context, seed), so a cache hit is never stale.

Simplification: a run's training schedule is fixed by the lab (warmup over the first 10% of steps,
cosine decay to a tenth of the peak learning rate); two processes submitting the *same* new config at
once are charged once but may both train it. The built-in corpus is about a million tokens at a
512-token vocabulary, so the smallest models of the largest default budget see it up to ~4 times
(repeating data that often costs little: Muennighoff et al. 2023).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from scaling.flops import count_parameters, training_flops


@dataclass(frozen=True)
class LabRequest:
    """What a student submits: the model shape, the optimiser knobs and the compute to spend."""

    d_model: int
    num_layers: int
    num_heads: int
    batch_size: int
    learning_rate: float
    train_flops: float

    def key(self) -> str:
        """Canonical JSON: the cache and ledger key (equal requests, equal keys)."""
        fields = asdict(self)
        fields["learning_rate"] = float(self.learning_rate)
        fields["train_flops"] = float(self.train_flops)
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_dict(cls, fields: dict) -> LabRequest:
        missing = {"d_model", "num_layers", "num_heads", "batch_size", "learning_rate", "train_flops"} - set(
            fields
        )
        if missing:
            raise ValueError(f"request lacks {sorted(missing)}")
        return cls(**{k: fields[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class LabConfig:
    """The lab's fixed settings: everything a request does not choose."""

    db_path: str = "runs/scaling_lab/ledger.sqlite"  # the SQLite ledger (budget, charges, results)
    total_budget: float = 3e12  # FLOPs (6ND) a student may spend in all; fixed when the ledger is created
    vocab_size: int = 512  # tokenizer size for the built-in corpus
    context_length: int = 64  # tokens per training sequence
    train_data: str = ""  # token array (.npy); "" = the built-in corpus tokenized with vocab_size
    val_data: str = ""  # validation token array; "" = the built-in corpus's validation split
    out_dir: str = "runs/scaling_lab"  # per-run training directories
    device: str = "cpu"  # training device
    num_threads: int = 1  # torch CPU threads per run (1 avoids oversubscribing shared cores)
    seed: int = 0  # model init and data order
    eval_batches: int = 16  # validation batches for the final loss
    min_steps: int = 5  # a request that buys fewer optimizer steps is refused before charging
    max_train_flops: float = 1e16  # largest single request
    max_d_model: int = 1024  # limits on the shape a request may ask for
    max_num_layers: int = 24
    max_batch_size: int = 512


class BudgetExceeded(ValueError):
    """A request would take the ledger past its total budget."""


# ----------------------------------------------------------------------------------------------
# Validation and planning


@dataclass(frozen=True)
class RunPlan:
    """How a validated request will be trained."""

    parameters: int  # non-embedding N (the N in C = 6ND)
    total_parameters: int
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
        norm_impl="torch",
        attention_impl="sdpa",
        rope_impl="complex",
    )


def result_settings(config: LabConfig) -> dict:
    """The lab fields a run's loss depends on (besides the request): a ledger is bound to them."""
    keys = ("vocab_size", "context_length", "train_data", "val_data", "seed", "eval_batches")
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
    steps = round(flops / (6 * counts.non_embedding) / tokens_per_step)
    if steps < config.min_steps:
        raise ValueError(
            f"train_flops={flops:.3g} buys {steps} steps of {tokens_per_step} tokens for N={counts.non_embedding:,}; "
            f"the lab needs at least {config.min_steps}"
        )
    tokens = steps * tokens_per_step
    return RunPlan(counts.non_embedding, counts.total, steps, tokens, training_flops(model, tokens))


# ----------------------------------------------------------------------------------------------
# The ledger


@dataclass(frozen=True)
class LabResult:
    """A finished run. ``charged`` is the FLOPs this query cost (0 for a cache hit or a free re-run)."""

    request: LabRequest
    train_loss: float
    val_loss: float
    parameters: int
    tokens: int
    steps: int
    exact_flops: float
    seconds: float
    cached: bool = False
    charged: float = 0.0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS charges (key TEXT PRIMARY KEY, flops REAL NOT NULL, charged_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, train_loss REAL, val_loss REAL, parameters INTEGER, tokens INTEGER,
    steps INTEGER, exact_flops REAL, seconds REAL, finished_at REAL NOT NULL
);
"""


class Ledger:
    """The budget ledger in one SQLite file, safe to share between processes.

    The total budget is written when the file is created; opening an existing ledger with a
    different ``total_budget`` is an error (pass ``None`` to open whatever is there).
    """

    def __init__(self, path: str | Path, total_budget: float | None = None):
        self.path = Path(path)
        if total_budget is not None and (not math.isfinite(total_budget) or total_budget <= 0):
            raise ValueError(f"total_budget must be a positive number of FLOPs, got {total_budget!r}")
        if total_budget is None and not self.path.is_file():
            raise FileNotFoundError(f"no ledger at {self.path}; give a total budget to create one")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE name = 'total_budget'").fetchone()
            if row is None:
                if total_budget is None:
                    raise ValueError(f"ledger {self.path} has no total budget; give one")
                db.execute("INSERT INTO meta VALUES ('total_budget', ?)", (repr(float(total_budget)),))
                self.total_budget = float(total_budget)
            else:
                self.total_budget = float(row[0])
                if total_budget is not None and float(total_budget) != self.total_budget:
                    raise ValueError(
                        f"ledger {self.path} was created with total budget {self.total_budget:.4g}, "
                        f"not {float(total_budget):.4g}"
                    )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` takes the write lock up front, so a read-check-write sequence (is
        there budget left? then charge) cannot interleave with another process's."""
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def bind(self, settings: dict) -> None:
        """Tie the ledger to the lab settings its results depend on (data, vocabulary, context...):
        the first call records them, later calls must match, so a cached result never answers a
        request made under other settings."""
        text = json.dumps(settings, sort_keys=True)
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'settings'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('settings', ?)", (text,))
            elif row[0] != text:
                old, new = json.loads(row[0]), settings
                changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                raise ValueError(
                    f"ledger {self.path} holds results made with other lab settings ({', '.join(changed)}); "
                    "use another ledger file"
                )

    def spent(self) -> float:
        with self._transaction() as db:
            return float(db.execute("SELECT COALESCE(SUM(flops), 0) FROM charges").fetchone()[0])

    def remaining(self) -> float:
        return self.total_budget - self.spent()

    def charge(self, request: LabRequest) -> float:
        """Charge ``request`` unless it was charged before; returns the FLOPs charged now (0 if
        already paid). Raises :class:`BudgetExceeded` if it does not fit."""
        key = request.key()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM charges WHERE key = ?", (key,)).fetchone():
                return 0.0
            spent = float(db.execute("SELECT COALESCE(SUM(flops), 0) FROM charges").fetchone()[0])
            remaining = self.total_budget - spent
            cost = float(request.train_flops)
            if cost > remaining:
                raise BudgetExceeded(
                    f"request of {cost:.4g} FLOPs exceeds the remaining budget of {remaining:.4g} FLOPs "
                    f"(spent {spent:.4g} of {self.total_budget:.4g})"
                )
            db.execute("INSERT INTO charges VALUES (?, ?, ?)", (key, cost, time.time()))
            return cost

    def is_charged(self, request: LabRequest) -> bool:
        with self._transaction() as db:
            return db.execute("SELECT 1 FROM charges WHERE key = ?", (request.key(),)).fetchone() is not None

    def cached(self, request: LabRequest) -> LabResult | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT train_loss, val_loss, parameters, tokens, steps, exact_flops, seconds FROM results WHERE key = ?",
                (request.key(),),
            ).fetchone()
        return None if row is None else _result(request, row, cached=True)

    def record(self, result: LabResult) -> None:
        r = result
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.request.key(),
                    _nullable(r.train_loss),
                    _nullable(r.val_loss),
                    r.parameters,
                    r.tokens,
                    r.steps,
                    r.exact_flops,
                    r.seconds,
                    time.time(),
                ),
            )

    def results(self) -> list[LabResult]:
        """Every finished run, oldest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT key, train_loss, val_loss, parameters, tokens, steps, exact_flops, seconds "
                "FROM results ORDER BY finished_at"
            ).fetchall()
        return [_result(LabRequest.from_dict(json.loads(row[0])), row[1:], cached=True) for row in rows]


def _nullable(value: float) -> float | None:
    return value if math.isfinite(value) else None  # SQLite has no NaN; a diverged run stores NULL


def _result(request: LabRequest, row: Sequence, cached: bool) -> LabResult:
    train_loss, val_loss, parameters, tokens, steps, exact_flops, seconds = row
    nan = float("nan")
    return LabResult(
        request,
        nan if train_loss is None else train_loss,
        nan if val_loss is None else val_loss,
        parameters,
        tokens,
        steps,
        exact_flops,
        seconds,
        cached=cached,
    )


# ----------------------------------------------------------------------------------------------
# Running requests

Runner = Callable[[LabRequest, RunPlan], tuple[float, float]]  # -> (train loss, validation loss)


class TrainingRunner:
    """The default runner: unit 1's ``train`` on the lab's data (built-in corpus unless given)."""

    def __init__(self, config: LabConfig):
        self.config = config
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
                from basics.prepare import prepare_data

                prepared = prepare_data(c.vocab_size)
                self._data = (str(prepared.train_tokens), str(prepared.val_tokens))
        return self._data

    def __call__(self, request: LabRequest, plan: RunPlan) -> tuple[float, float]:
        import torch

        from basics.train import TrainConfig, TrainingDiverged, train

        c = self.config
        train_data, val_data = self.data()
        run_dir = Path(c.out_dir) / "runs" / _run_name(request)
        config = TrainConfig(
            model=model_config_for(request, c),
            train_data=train_data,
            val_data=val_data,
            out_dir=str(run_dir),
            batch_size=request.batch_size,
            max_steps=plan.steps,
            learning_rate=request.learning_rate,
            min_learning_rate=request.learning_rate / 10,
            warmup_steps=max(1, plan.steps // 10),
            eval_interval=plan.steps,
            eval_batches=c.eval_batches,
            checkpoint_interval=plan.steps,
            keep_checkpoints=1,
            log_interval=max(1, min(50, plan.steps // 5)),
            device=c.device,
            seed=c.seed,
            progress=False,
        )
        threads = torch.get_num_threads()
        torch.set_num_threads(c.num_threads)
        try:
            result = train(config)
        except TrainingDiverged:
            return float("nan"), float("nan")  # a real outcome of a bad config: reported, not hidden
        finally:
            torch.set_num_threads(threads)
        return float(result.train_loss), float(result.val_loss)


def _run_name(request: LabRequest) -> str:
    r = request
    return f"d{r.d_model}-l{r.num_layers}-h{r.num_heads}-b{r.batch_size}-lr{r.learning_rate:g}-c{r.train_flops:.3g}"


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


# ----------------------------------------------------------------------------------------------
# The IsoFLOPs sweep

# (d_model, num_layers, num_heads): non-embedding N from about 2 thousand to 3 million.
DEFAULT_SHAPES: tuple[tuple[int, int, int], ...] = (
    (8, 1, 2),
    (12, 1, 2),
    (16, 1, 2),
    (20, 1, 2),
    (24, 1, 2),
    (32, 1, 2),
    (32, 2, 2),
    (48, 2, 4),
    (64, 2, 4),
    (64, 3, 4),
    (96, 3, 4),
    (128, 3, 4),
    (128, 4, 8),
    (192, 4, 8),
    (256, 4, 8),
)


@dataclass(frozen=True)
class SweepConfig:
    """An IsoFLOPs sweep: for each budget, the shapes whose N is near the guessed optimum."""

    budgets: tuple[float, ...] = (1e10, 3e10, 1e11)  # compute budgets C (FLOPs, 6ND)
    sizes_per_budget: int = 6  # shapes trained per budget (nearest to the guess in log N)
    # Guess of the optimum, N* = sqrt(C / (6 * ratio)). Chinchilla's ratio is about 20; at this tiny
    # scale, where the output head (left out of N) outweighs the blocks, the optimum sits near 60.
    tokens_per_parameter: float = 60.0
    batch_size: int = 16  # sequences per step for every run
    learning_rate: float = 1e-2  # peak learning rate for every run (tiny models like it high)


def select_shapes(
    budget: float,
    config: SweepConfig,
    lab: LabConfig,
    shapes: Sequence[tuple[int, int, int]] = DEFAULT_SHAPES,
) -> list[tuple[int, int, int]]:
    """The ``sizes_per_budget`` shapes closest in log N to ``N* = sqrt(C / (6 · tokens_per_parameter))``
    that buy at least ``lab.min_steps`` steps, sorted by N."""
    from basics.model import ModelConfig

    target = math.sqrt(budget / (6 * config.tokens_per_parameter))
    usable = []
    for shape in shapes:
        d_model, num_layers, num_heads = shape
        model = ModelConfig(
            vocab_size=lab.vocab_size,
            context_length=lab.context_length,
            d_model=d_model,
            num_layers=num_layers,
            num_heads=num_heads,
        )
        n = count_parameters(model).non_embedding
        steps = budget / (6 * n) / (config.batch_size * lab.context_length)
        if steps >= lab.min_steps:
            usable.append((abs(math.log(n / target)), n, shape))
    chosen = sorted(usable)[: config.sizes_per_budget]
    return [shape for _, _, shape in sorted(chosen, key=lambda item: item[1])]


def sweep_requests(config: SweepConfig, lab: LabConfig, shapes=DEFAULT_SHAPES) -> list[LabRequest]:
    return [
        LabRequest(d, layers, heads, config.batch_size, config.learning_rate, float(budget))
        for budget in config.budgets
        for d, layers, heads in select_shapes(budget, config, lab, shapes)
    ]


def run_sweep(
    requests: Sequence[LabRequest], ledger: Ledger, config: LabConfig, runner: Runner | None = None
) -> Iterator[LabResult]:
    """Query each request in turn, yielding results as they finish. Re-running an interrupted sweep
    charges nothing twice: finished runs come from the cache, charged-but-unfinished ones run free.
    The whole sweep's cost is checked up front so a sweep that cannot finish does not start."""
    runner = runner if runner is not None else TrainingRunner(config)
    unpaid = {r.key(): r for r in requests if not ledger.is_charged(r)}  # duplicates pay once
    new_cost = sum(r.train_flops for r in unpaid.values())
    remaining = ledger.remaining()
    if new_cost > remaining:
        raise BudgetExceeded(
            f"the sweep needs {new_cost:.4g} more FLOPs but the remaining budget is {remaining:.4g} FLOPs"
        )
    for request in requests:
        yield query(request, ledger, config, runner)


def isoflops_runs(results: Sequence[LabResult]) -> tuple[list, list[LabResult]]:
    """Lab results -> IsoFLOPs ``Run`` records (N, C, validation loss), and the results left out
    because their loss is not finite (diverged runs), so callers can report them."""
    from scaling.isoflops import Run

    runs, left_out = [], []
    for r in results:
        if math.isfinite(r.val_loss):
            runs.append(Run(float(r.parameters), float(r.request.train_flops), float(r.val_loss)))
        else:
            left_out.append(r)
    return runs, left_out
