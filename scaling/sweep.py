"""The IsoFLOPs sweep through the lab: which models to train at each budget, and running them.

Handout section "Scaling laws with IsoFLOPs profiles" (Hoffmann et al. 2022, approach 2): at each
compute budget C, train models of several sizes N (each on D = C / 6N tokens) and find the size with
the lowest loss; the optima across budgets give N_opt(C). Every request goes through the lab
(scaling/lab.py), so the sweep is charged against the ledger and an interrupted sweep resumes free.

What makes a small sweep measure the model rather than the noise:

- **Sizes around the predicted optimum.** Budgets run from smallest to largest. The first is centred
  on ``N* = sqrt(C / (6 · tokens_per_parameter))``; the second on the first's optimum moved by
  ``sqrt`` of the budget ratio; later ones on the power law fitted to the optima so far. Around the
  centre, ``sizes_per_budget`` sizes are spaced by ``size_spacing`` in N (log-spaced) and each is
  matched to the nearest shape of :func:`candidate_shapes`. When the lowest mean loss still lands on
  the smallest or largest size, the sweep warns and adds a size beyond that edge (``max_extra_sizes``)
  while a shape exists there (none is smaller than width 8 with one layer: at vocabulary 512 its
  embeddings alone are 8,192 parameters, so a budget below about 3e10 has its optimum at that floor).
- **A learning rate per size** (:func:`learning_rate_for`): the peak learning rate falls as a power
  of the width, ``(base_width / d_model) ** lr_exponent`` (µP's rule for Adam's hidden matrices is
  exponent 1: Yang et al. 2022), anchored at ``base_learning_rate`` for ``base_width``. The defaults
  were fitted to two probes on this lab's schedule (made while the lab still counted non-embedding N,
  so with more tokens per run than today's): width 32 at C = 3e10 (loss 3.417, 3.364 at
  lr 0.02, 0.06) and width 64 at C = 3e11 (2.936, 2.970, 3.028 at lr 0.015, 0.03, 0.06): the best
  learning rate fell faster than 1/d_model between them, so the exponent is 1.5, not 1; the rate is
  capped at the largest one probed (0.06), which the rule would otherwise exceed below width 32.
  Re-probed under today's all-parameters convention (one seed each): width 40, 2 layers at C = 3e11
  reached 3.154, 3.080, 3.080 at lr 0.015, 0.030 (the rule), 0.06; width 24, 1 layer at C = 3e10
  3.626, 3.583, 3.605 at lr 0.03, 0.06 (the cap), 0.12: the rule sits at the best rate probed.
- **A batch size per size** (:func:`batch_size_for`): a power of two chosen so that each run takes
  about ``target_steps`` steps, within ``[smallest_batch, largest_batch]``: a small model trains on
  more tokens and gets a bigger batch, so no run is starved of steps or drowned in them.
- **Seeds.** Every (budget, size) point is trained with ``seeds`` seeds; the fits use the mean and the
  bootstrap (scaling/prediction.py) resamples them.
- **Speed.** Tiny models are bound by per-op overhead more than by matmuls: the runs of a budget go
  to ``workers`` processes of one torch thread each. Measured on this 2-core machine (one thread):
  batching 4 seeds through ``torch.func.vmap`` ran at 4.9 vs 6.9 GFLOP/s eager for width 32 (CPU
  attention has no batching rule), so it is not used; ``torch.compile`` of the loss and backward cut
  a width-48 step from 27.6 to 18.8 CPU-ms but cost 10 CPU-s to compile, a loss for the few-hundred-
  step runs of the small budgets and a gain only at the top one (not done yet).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from scaling.flops import count_parameters
from scaling.lab import LabConfig, Runner, TrainingRunner, model_config_for, query
from scaling.ledger import BudgetExceeded, LabRequest, LabResult, Ledger

Shape = tuple[int, int, int]  # (d_model, num_layers, num_heads)


@dataclass(frozen=True)
class SweepConfig:
    """An IsoFLOPs sweep: budgets, how sizes are placed around the optimum, and the per-size rules."""

    budgets: tuple[float, ...] = (3e10, 1e11, 3e11, 1e12)  # compute budgets C (FLOPs, 6ND), ascending
    sizes_per_budget: int = 5  # model sizes per budget, log-spaced around the predicted optimum
    size_spacing: float = 2.0  # ratio of neighbouring sizes' N
    seeds: int = 2  # runs per (budget, size), seeds 0 .. seeds-1
    tokens_per_parameter: float = 20.0  # first budget's guess of D/N at the optimum (Chinchilla's ~20)
    base_learning_rate: float = 1.5e-2  # peak learning rate at d_model = base_width
    base_width: int = 64  # the width base_learning_rate is for
    lr_exponent: float = 1.5  # lr ∝ (base_width / d_model) ** lr_exponent (µP's rule for Adam: 1)
    max_learning_rate: float = 0.06  # cap for the narrowest models (the largest rate probed)
    target_steps: int = 400  # batch size chosen so a run takes about this many optimizer steps
    smallest_batch: int = 8  # sequences per step, at least
    largest_batch: int = 256  # and at most
    max_extra_sizes: int = 2  # sizes added per budget while the best one sits at an edge
    workers: int = 2  # training processes (one torch thread each; 1 = in this process)

    def __post_init__(self) -> None:
        counts = (
            "sizes_per_budget",
            "seeds",
            "base_width",
            "target_steps",
            "smallest_batch",
            "largest_batch",
            "workers",
        )
        for name in counts:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SweepConfig.{name} must be a positive integer; got {value!r}")
        if (
            isinstance(self.max_extra_sizes, bool)
            or not isinstance(self.max_extra_sizes, int)
            or self.max_extra_sizes < 0
        ):
            raise ValueError(
                f"SweepConfig.max_extra_sizes must be an integer >= 0; got {self.max_extra_sizes!r}"
            )
        for name, values in (
            ("budgets", self.budgets),
            ("tokens_per_parameter", [self.tokens_per_parameter]),
            ("base_learning_rate", [self.base_learning_rate]),
            ("max_learning_rate", [self.max_learning_rate]),
            ("size_spacing", [self.size_spacing - 1]),  # > 1: neighbouring sizes must differ
        ):
            if not values or any(not math.isfinite(v) or v <= 0 for v in values):
                raise ValueError(
                    f"SweepConfig.{name} must be finite numbers > 0 (size_spacing > 1); got {values!r}"
                )
        if not math.isfinite(self.lr_exponent) or self.smallest_batch > self.largest_batch:
            raise ValueError(
                f"SweepConfig: lr_exponent must be finite and smallest_batch <= largest_batch; got {self}"
            )


def learning_rate_for(d_model: int, config: SweepConfig) -> float:
    """Width rule: ``base_learning_rate · (base_width / d_model) ** lr_exponent``, at most
    ``max_learning_rate``.

    >>> round(learning_rate_for(128, SweepConfig()), 6), learning_rate_for(16, SweepConfig())
    (0.005303, 0.06)
    """
    rate = config.base_learning_rate * (config.base_width / d_model) ** config.lr_exponent
    return min(rate, config.max_learning_rate)


def batch_size_for(tokens: float, context_length: int, config: SweepConfig) -> int:
    """The power of two nearest ``tokens / (context_length · target_steps)`` sequences, clipped.

    >>> batch_size_for(64 * 400 * 32, 64, SweepConfig())
    32
    """
    ideal = tokens / (context_length * config.target_steps)
    power = 2 ** round(math.log2(max(ideal, 1.0)))
    return int(min(max(power, config.smallest_batch), config.largest_batch))


def candidate_shapes(max_d_model: int = 512, max_num_layers: int = 24) -> list[Shape]:
    """Every shape the sweep may use: widths in steps of 8, depth keeping ``d_model / num_layers``
    between 8 and 64 (a fixed aspect ratio would leave big gaps in N among tiny models; below width
    32 it may be as thin as 8), heads of 16 dimensions (8 when the width is not a multiple of 16).

    At least two layers from width 16 up: one attention layer cannot look up a token by what came
    before it (an induction head needs two: Olsson et al. 2022), and measured here at C = 3e11 a
    2-layer width-32 model (N = 60K) reached 2.993 where the 1-layer one (46K) reached 3.056 and a
    2-layer width-40 one (81K) 3.080. A sweep whose small budgets get 1-layer models and large ones
    deep models mixes two kinds of model into one curve.
    """
    shapes = []
    for d_model in range(8, max_d_model + 1, 8):
        head_dim = 16 if d_model % 16 == 0 else 8
        for num_layers in range(1 if d_model < 16 else 2, min(d_model // 8, max_num_layers) + 1):
            aspect = d_model / num_layers
            if 8 <= aspect <= 64 and (aspect >= 16 or d_model < 32):
                shapes.append((d_model, num_layers, d_model // head_dim))
    return shapes


def shape_parameters(shape: Shape, lab: LabConfig) -> int:
    """N (all parameters, the lab's convention) of a shape at the lab's vocabulary and context."""
    d_model, num_layers, num_heads = shape
    request = LabRequest(d_model, num_layers, num_heads, 1, 1e-3, 1.0)
    return count_parameters(model_config_for(request, lab)).total


def nearest_shape(target: float, lab: LabConfig, exclude: Sequence[Shape] = ()) -> Shape:
    """The candidate shape nearest ``target`` in log N, with a penalty of a quarter of the log-distance
    of its aspect ratio ``d_model / num_layers`` from 32, so neighbouring sizes keep similar shapes."""

    def distance(shape: Shape) -> float:
        d_model, num_layers, _ = shape
        return abs(math.log(shape_parameters(shape, lab) / target)) + 0.25 * abs(
            math.log(d_model / num_layers / 32)
        )

    return min(
        (s for s in candidate_shapes(lab.max_d_model, lab.max_num_layers) if s not in exclude), key=distance
    )


def place_sizes(centre: float, config: SweepConfig, lab: LabConfig) -> list[Shape]:
    """``sizes_per_budget`` distinct shapes at N ≈ ``centre · spacing^k``, k centred on 0, sorted by N."""
    half = (config.sizes_per_budget - 1) / 2
    shapes: list[Shape] = []
    for k in range(config.sizes_per_budget):
        shapes.append(nearest_shape(centre * config.size_spacing ** (k - half), lab, exclude=shapes))
    return sorted(shapes, key=lambda s: shape_parameters(s, lab))


def requests_for(
    budget: float, shapes: Sequence[Shape], config: SweepConfig, lab: LabConfig
) -> list[LabRequest]:
    """One request per (shape, seed) at ``budget``, each with its size's learning rate and batch size."""
    requests = []
    for shape in shapes:
        tokens = budget / (6 * shape_parameters(shape, lab))
        batch = batch_size_for(tokens, lab.context_length, config)
        lr = learning_rate_for(shape[0], config)
        requests.extend(LabRequest(*shape, batch, lr, float(budget), seed) for seed in range(config.seeds))
    return requests


def predicted_centre(budget: float, optima: Sequence[tuple[float, float]], config: SweepConfig) -> float:
    """Where to centre the sizes at ``budget`` given the ``(C, N_opt)`` optima of earlier budgets."""
    if not optima:
        return math.sqrt(budget / (6 * config.tokens_per_parameter))
    if len(optima) == 1:
        ((c, n),) = optima
        return n * math.sqrt(budget / c)
    from scaling.isoflops import fit_power_law

    return float(fit_power_law([c for c, _ in optima], [n for _, n in optima])(budget))


def check_request(
    parameters: float, budget: float, config: SweepConfig, lab: LabConfig, seed: int = 0
) -> LabRequest:
    """The run that checks a prediction: the shape nearest the predicted N_opt, trained at ``budget``
    with the sweep's learning-rate and batch-size rules (so it is trained like the sweep's runs)."""
    shape = nearest_shape(parameters, lab)
    (request,) = requests_for(budget, [shape], SweepConfig(**{**config.__dict__, "seeds": 1}), lab)
    return LabRequest(*shape, request.batch_size, request.learning_rate, float(budget), seed)


# ----------------------------------------------------------------------------------------------
# Running the sweep


def run_sweep(
    config: SweepConfig,
    ledger: Ledger,
    lab: LabConfig,
    runner: Runner | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Iterator[LabResult]:
    """Train the sweep budget by budget, yielding results as each budget finishes.

    ``runner`` replaces real training (then everything runs in this process); ``on_warning``
    hears about optima at the edge of a budget's sizes. Re-running an interrupted sweep charges
    nothing twice: the placement depends only on earlier results, which come from the cache.
    The sweep's planned cost is checked up front so a sweep that cannot finish does not start.
    """
    check_sweep_fits(config, ledger)
    warn = on_warning or (lambda message: None)
    workers = config.workers if runner is None else 1
    runner = runner if runner is not None else TrainingRunner(lab)
    if isinstance(runner, TrainingRunner):
        runner.data()  # tokenize the corpus once, here, before any worker needs it
    optima: list[tuple[float, float]] = []
    with _Pool(workers) as pool:
        for budget in sorted(config.budgets):
            shapes = place_sizes(predicted_centre(budget, optima, config), config, lab)
            results = pool.run(requests_for(budget, shapes, config, lab), ledger, lab, runner)
            yield from results
            for _ in range(config.max_extra_sizes):
                extra = extra_size(results, shapes, lab, config)
                if extra is None:
                    edge = lowest_edge(results)
                    if edge is not None:
                        warn(
                            f"at C = {budget:.3g} the lowest loss is at the {edge} size and no shape "
                            f"lies beyond it"
                        )
                    break
                warn(
                    f"at C = {budget:.3g} the lowest loss is at the edge of the sizes tried; adding N = "
                    f"{shape_parameters(extra, lab):,}"
                )
                shapes.append(extra)
                more = pool.run(requests_for(budget, [extra], config, lab), ledger, lab, runner)
                results.extend(more)
                yield from more
            optimum = budget_optimum(results)
            if optimum is not None:
                optima.append((budget, optimum))


def check_sweep_fits(config: SweepConfig, ledger: Ledger) -> None:
    """Refuse a sweep whose planned runs (sizes × seeds per budget, not yet charged) exceed the
    remaining budget. Extra edge sizes are charged as they come (the ledger refuses what does not fit)."""
    charged: dict[float, int] = {}
    for request in ledger.charged_requests():
        if request.seed < config.seeds:
            charged[request.train_flops] = charged.get(request.train_flops, 0) + 1
    planned = config.sizes_per_budget * config.seeds
    needed = sum(b * max(0, planned - charged.get(float(b), 0)) for b in set(config.budgets))
    remaining = ledger.remaining()
    if needed > remaining:
        raise BudgetExceeded(
            f"the sweep needs {needed:.4g} more FLOPs but the remaining budget is {remaining:.4g} FLOPs"
        )


def mean_losses(results: Sequence[LabResult]) -> dict[int, float]:
    """Mean validation loss over seeds per size N (NaN if any seed diverged), sizes ascending."""
    by_size: dict[int, list[float]] = {}
    for r in results:
        by_size.setdefault(r.parameters, []).append(r.val_loss)
    return {n: sum(v) / len(v) for n, v in sorted(by_size.items())}


def lowest_edge(results: Sequence[LabResult]) -> str | None:
    """``"smallest"`` or ``"largest"`` when the lowest mean loss sits at that size, else None."""
    means = {n: v for n, v in mean_losses(results).items() if math.isfinite(v)}
    if len(means) < 2:
        return None
    sizes = sorted(means)
    best = min(sizes, key=means.get)
    return "smallest" if best == sizes[0] else "largest" if best == sizes[-1] else None


def extra_size(results: Sequence[LabResult], shapes: Sequence[Shape], lab: LabConfig, config: SweepConfig):
    """The shape to add beyond the edge where the lowest mean loss sits: None if that is inside, or
    if no candidate shape lies beyond that edge (nothing smaller than the smallest model, whose
    embeddings alone are ``2 · vocab_size · 8`` parameters)."""
    edge = lowest_edge(results)
    if edge is None:
        return None
    sizes = sorted(mean_losses(results))
    if edge == "smallest":
        shape = nearest_shape(sizes[0] / config.size_spacing, lab, exclude=shapes)
        beyond = shape_parameters(shape, lab) < sizes[0]
    else:
        shape = nearest_shape(sizes[-1] * config.size_spacing, lab, exclude=shapes)
        beyond = shape_parameters(shape, lab) > sizes[-1]
    return shape if beyond else None  # the nearest unused shape may lie on the other side


def budget_optimum(results: Sequence[LabResult]) -> float | None:
    """N at the vertex of the parabola through the mean losses (None if fewer than 3 finite sizes)."""
    from scaling.isoflops import Run, optimal_point

    means = {n: v for n, v in mean_losses(results).items() if math.isfinite(v)}
    if len(means) < 3:
        return None
    budget = results[0].request.train_flops
    return optimal_point([Run(n, budget, v) for n, v in means.items()], "parabola").parameters


class _Pool:
    """Runs a batch of requests: in this process, or over ``workers`` processes (largest N first,
    results in request order). One pool serves the whole sweep, so workers import torch once."""

    def __init__(self, workers: int):
        self.workers = workers
        self.executor = None

    def __enter__(self) -> _Pool:
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
            self.executor = ProcessPoolExecutor(self.workers, mp_context=context)
        return self

    def __exit__(self, *exc) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=exc[0] is None, cancel_futures=True)

    def run(
        self, requests: list[LabRequest], ledger: Ledger, lab: LabConfig, runner: Runner
    ) -> list[LabResult]:
        if self.executor is None:
            return [query(r, ledger, lab, runner) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: -requests[i].d_model * requests[i].num_layers)
        futures = {
            i: self.executor.submit(_query_in_worker, requests[i], str(ledger.path), lab, runner)
            for i in order
        }
        return [futures[i].result() for i in range(len(requests))]


def _query_in_worker(request: LabRequest, db_path: str, lab: LabConfig, runner: Runner) -> LabResult:
    return query(request, Ledger(db_path), lab, runner)


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
