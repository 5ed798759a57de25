"""The IsoFLOPs sweep through the lab: which shapes to train at each budget, and running them.

Handout section "Scaling laws with IsoFLOPs profiles" (Hoffmann et al. 2022, approach 2): at each
compute budget C, train models of several sizes N (each on D = C / 6N tokens) and find the size with
the lowest loss; the optima across budgets give N_opt(C). The requests go through the lab
(scaling/lab.py), so the sweep is charged against the ledger and an interrupted sweep resumes for free.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from scaling.flops import count_parameters
from scaling.lab import LabConfig, Runner, TrainingRunner, query
from scaling.ledger import BudgetExceeded, LabRequest, LabResult, Ledger

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

    def __post_init__(self) -> None:
        for name in ("sizes_per_budget", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SweepConfig.{name} must be a positive integer; got {value!r}")
        for name, values in (
            ("budgets", self.budgets),
            ("tokens_per_parameter", [self.tokens_per_parameter]),
            ("learning_rate", [self.learning_rate]),
        ):
            if not values or any(not math.isfinite(v) or v <= 0 for v in values):
                raise ValueError(f"SweepConfig.{name} must be finite numbers > 0; got {values!r}")


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
