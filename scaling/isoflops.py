"""IsoFLOPs scaling laws: the compute-optimal model size and data size as power laws of compute.

Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models", approach 2; handout
section "IsoFLOPs". For each compute budget ``C`` several model sizes ``N`` are trained on
``D = C / (6N)`` tokens. The lowest final loss at each budget marks the compute-optimal
``N_opt(C)`` (optionally refined by a parabola in ``log N`` through the lowest points), and two
power laws are fitted by ordinary least squares in log space::

    log N_opt = log k_N + a · log C        log D_opt = log k_D + b · log C

With ``D = C / (6N)``, ``b = 1 - a`` exactly; both are fitted anyway, as in the paper.

Interchange format (what :func:`load_runs` reads): a JSON list of records
``{"parameters": N, "compute_budget": C, "final_loss": L}``.

    >>> runs = [Run(n, c, 2.0 + abs(math.log(n / (0.1 * c**0.5)))) for c in (1e16, 1e18, 1e20)
    ...         for n in (0.1 * c**0.5 * 2.0**k for k in range(-3, 4))]
    >>> fit = fit_isoflops(runs)
    >>> round(fit.parameters_law.exponent, 3)
    0.5

Uncertainty: :func:`bootstrap_isoflops` resamples the runs within each budget and refits.
Simplification: no weighting of budgets; a budget whose lowest loss sits at the end of its size
range is used as is (the script warns about it through :func:`edge_optima`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

Method = Literal["minimum", "parabola"]


@dataclass(frozen=True)
class Run:
    """One finished training run: model size N, compute budget C (FLOPs), final loss L."""

    parameters: float
    compute_budget: float
    final_loss: float

    @property
    def tokens(self) -> float:
        return self.compute_budget / (6.0 * self.parameters)


def validate_runs(runs: Iterable[Run], min_budgets: int = 2) -> list[Run]:
    """Check every value is finite and positive and there are at least ``min_budgets`` budgets."""
    runs = list(runs)
    if not runs:
        raise ValueError("no runs given")
    for i, run in enumerate(runs):
        for name in ("parameters", "compute_budget", "final_loss"):
            value = getattr(run, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"run {i}: {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"run {i}: {name} is not finite ({value})")
            if value <= 0:
                raise ValueError(f"run {i}: {name} must be positive, got {value}")
    budgets = {run.compute_budget for run in runs}
    if len(budgets) < min_budgets:
        raise ValueError(
            f"need runs at {min_budgets} or more distinct compute budgets to fit a law, got {len(budgets)}"
        )
    return runs


def runs_from_records(records: Sequence[dict]) -> list[Run]:
    """``[{"parameters", "compute_budget", "final_loss"}, ...]`` -> runs (extra keys are ignored)."""
    if not isinstance(records, list):
        raise ValueError(f"expected a JSON list of run records, got {type(records).__name__}")
    runs = []
    for i, record in enumerate(records):
        missing = {"parameters", "compute_budget", "final_loss"} - set(record)
        if missing:
            raise ValueError(f"run record {i} lacks {sorted(missing)}")
        values = [record[k] for k in ("parameters", "compute_budget", "final_loss")]
        if any(v is None for v in values):  # JSON has no NaN; null is how a failed run shows up
            raise ValueError(f"run record {i} has a null value: {record}")
        runs.append(Run(*(float(v) for v in values)))
    return runs


def load_runs(path: str | Path) -> list[Run]:
    """Read the course's JSON interchange file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no runs file at {path}")
    return runs_from_records(json.loads(path.read_text()))


def save_runs(runs: Iterable[Run], path: str | Path) -> Path:
    path = Path(path)
    records = [
        {"parameters": r.parameters, "compute_budget": r.compute_budget, "final_loss": r.final_loss}
        for r in runs
    ]
    path.write_text(json.dumps(records, indent=1) + "\n")
    return path


def group_by_budget(runs: Iterable[Run]) -> dict[float, list[Run]]:
    """Runs per compute budget, budgets ascending, runs sorted by size."""
    groups: dict[float, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.compute_budget, []).append(run)
    return {c: sorted(groups[c], key=lambda r: r.parameters) for c in sorted(groups)}


# ----------------------------------------------------------------------------------------------
# Picking the optimum per budget


@dataclass(frozen=True)
class OptimalPoint:
    """The compute-optimal run at one budget (D = C / 6N)."""

    compute_budget: float
    parameters: float
    loss: float

    @property
    def tokens(self) -> float:
        return self.compute_budget / (6.0 * self.parameters)


def optimal_point(runs: Sequence[Run], method: Method = "minimum") -> OptimalPoint:
    """The compute-optimal N among ``runs`` (all at one budget).

    ``"minimum"`` takes the lowest-loss run. ``"parabola"`` fits ``L = c2·x² + c1·x + c0`` with
    ``x = log N`` through the lowest run and its neighbours (all runs when there are up to five)
    and returns the vertex, kept inside the sampled range.
    """
    budgets = {r.compute_budget for r in runs}
    if len(budgets) != 1:
        raise ValueError(f"optimal_point needs runs at one budget, got {len(budgets)}")
    runs = sorted(runs, key=lambda r: r.parameters)
    best = min(range(len(runs)), key=lambda i: runs[i].final_loss)
    if method == "minimum":
        run = runs[best]
        return OptimalPoint(run.compute_budget, run.parameters, run.final_loss)
    if method != "parabola":
        raise ValueError(f"unknown method {method!r}; expected 'minimum' or 'parabola'")
    # A resampled budget may hold the same size twice: average them, they add no new point.
    by_size: dict[float, list[float]] = {}
    for r in runs:
        by_size.setdefault(r.parameters, []).append(r.final_loss)
    sizes = sorted(by_size)
    if len(sizes) < 3:
        raise ValueError(
            f"a parabola needs 3 or more distinct sizes per budget, got {len(sizes)} at C={runs[0].compute_budget:g}"
        )
    losses = [float(np.mean(by_size[n])) for n in sizes]
    (c2, c1, c0), centre, window = fit_parabola(sizes, losses)
    if c2 <= 0:  # no valley: fall back to the lowest run
        best = int(np.argmin(losses))
        return OptimalPoint(runs[0].compute_budget, sizes[best], losses[best])
    x = np.log(window) - centre
    vertex = float(np.clip(-c1 / (2 * c2), x.min(), x.max()))
    return OptimalPoint(
        runs[0].compute_budget, math.exp(vertex + centre), float(c2 * vertex**2 + c1 * vertex + c0)
    )


def fit_parabola(sizes: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, float, list[float]]:
    """``L = c2·x² + c1·x + c0`` with ``x = log N - centre`` through the lowest loss and up to two
    neighbours on each side (a parabola is a local model of the valley); sizes ascending.
    Returns ``((c2, c1, c0), centre, the sizes used)``."""
    best = int(np.argmin(losses))
    lo = max(0, min(best - 2, len(sizes) - 5))
    window = list(sizes[lo : lo + 5])
    x = np.log(window)
    centre = float(x.mean())  # fit in centred coordinates: better conditioned than raw log N
    return np.polyfit(x - centre, np.asarray(losses[lo : lo + 5], dtype=float), 2), centre, window


def optimal_points(runs: Iterable[Run], method: Method = "minimum") -> list[OptimalPoint]:
    return [optimal_point(group, method) for group in group_by_budget(runs).values()]


def edge_optima(runs: Iterable[Run]) -> list[float]:
    """Budgets whose lowest loss is at the smallest or largest size tried (the optimum may lie outside)."""
    edges = []
    for budget, group in group_by_budget(runs).items():
        best = min(range(len(group)), key=lambda i: group[i].final_loss)
        if len(group) > 1 and best in (0, len(group) - 1):
            edges.append(budget)
    return edges


# ----------------------------------------------------------------------------------------------
# Power laws


@dataclass(frozen=True)
class PowerLaw:
    """``y = coefficient · x ** exponent``."""

    coefficient: float
    exponent: float

    def __call__(self, x: float | np.ndarray) -> float | np.ndarray:
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent

    def __str__(self) -> str:
        return f"{self.coefficient:.4g} * C^{self.exponent:.4f}"


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Ordinary least squares of ``log y`` on ``log x`` (natural logs; the slope is the exponent)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and the same length, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError(f"a power law needs 2 or more distinct x values, got {len(np.unique(x))}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("power-law fit got non-finite values")
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("power-law fit needs positive values (it works in log space)")
    slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
    return PowerLaw(float(math.exp(intercept)), float(slope))


@dataclass(frozen=True)
class IsoFlopsFit:
    """The fitted laws ``N_opt(C)`` and ``D_opt(C)`` and the points they were fitted to."""

    points: tuple[OptimalPoint, ...]
    parameters_law: PowerLaw
    tokens_law: PowerLaw
    method: Method

    def predict(self, compute_budget: float) -> tuple[float, float]:
        """``(N_opt, D_opt)`` at ``compute_budget`` FLOPs."""
        return float(self.parameters_law(compute_budget)), float(self.tokens_law(compute_budget))

    @property
    def description(self) -> str:
        how = (
            "lowest-loss run per budget"
            if self.method == "minimum"
            else "vertex of a parabola in log N per budget"
        )
        return f"optimum: {how}; D = C / (6N); laws: least squares of log N_opt, log D_opt on log C"


def fit_isoflops(runs: Iterable[Run], method: Method = "minimum") -> IsoFlopsFit:
    """Fit ``N_opt = k_N·C^a`` and ``D_opt = k_D·C^b`` to the compute-optimal point of each budget."""
    runs = validate_runs(runs)
    points = optimal_points(runs, method)
    budgets = [p.compute_budget for p in points]
    return IsoFlopsFit(
        points=tuple(points),
        parameters_law=fit_power_law(budgets, [p.parameters for p in points]),
        tokens_law=fit_power_law(budgets, [p.tokens for p in points]),
        method=method,
    )


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"


@dataclass(frozen=True)
class IsoFlopsBootstrap:
    """Percentile intervals from refitting on resampled runs. ``predictions[C] = (N_opt, D_opt)``."""

    level: float
    num_samples: int
    parameters_exponent: Interval
    tokens_exponent: Interval
    predictions: dict[float, tuple[Interval, Interval]]


def bootstrap_isoflops(
    runs: Iterable[Run],
    compute_budgets: Sequence[float] = (1e23, 1e24),
    num_samples: int = 500,
    level: float = 0.9,
    method: Method = "minimum",
    seed: int = 0,
) -> IsoFlopsBootstrap:
    """Resample runs with replacement *within each budget* (so every budget keeps runs), refit,
    and report percentile intervals of the exponents and of the predictions at ``compute_budgets``."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    runs = validate_runs(runs)
    fit = fit_isoflops(runs, method)
    groups = list(group_by_budget(runs).values())
    rng = np.random.default_rng(seed)
    samples = []  # rows: a, b, then N_opt, D_opt per requested budget
    for _ in range(num_samples):
        resampled = [group[i] for group in groups for i in rng.integers(0, len(group), len(group))]
        try:
            refit = fit_isoflops(resampled, method)
        except ValueError:  # e.g. a parabola through too few distinct sizes: skip this draw
            continue
        row = [refit.parameters_law.exponent, refit.tokens_law.exponent]
        for c in compute_budgets:
            row.extend(refit.predict(c))
        samples.append(row)
    if len(samples) < 2:
        raise ValueError("bootstrap failed: fewer than 2 resamples could be fitted")
    table = np.array(samples)
    tail = 100 * (1 - level) / 2
    lows, highs = np.percentile(table, tail, axis=0), np.percentile(table, 100 - tail, axis=0)

    def interval(column: int, estimate: float) -> Interval:
        return Interval(estimate, float(lows[column]), float(highs[column]))

    predictions = {}
    for j, c in enumerate(compute_budgets):
        n_opt, d_opt = fit.predict(c)
        predictions[float(c)] = (interval(2 + 2 * j, n_opt), interval(3 + 2 * j, d_opt))
    return IsoFlopsBootstrap(
        level=level,
        num_samples=len(samples),
        parameters_exponent=interval(0, fit.parameters_law.exponent),
        tokens_exponent=interval(1, fit.tokens_law.exponent),
        predictions=predictions,
    )


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib is imported only here, with a file backend)


def plot_isoflops(
    runs: Iterable[Run], fit: IsoFlopsFit, out_dir: str | Path, extrapolate_to: float = 1e24
) -> list[Path]:
    """Save ``isoflops_curves.png`` (loss vs N per budget), ``n_opt_vs_compute.png`` and
    ``d_opt_vs_compute.png`` (optimal points and the fitted law extrapolated to ``extrapolate_to``).
    Returns the paths."""
    import matplotlib

    matplotlib.use("Agg")  # a file backend: no display needed
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_plot_curves(group_by_budget(runs), fit, out_dir / "isoflops_curves.png")]
    budgets = [p.compute_budget for p in fit.points]
    for name, law, values, label in (
        (
            "n_opt_vs_compute.png",
            fit.parameters_law,
            [p.parameters for p in fit.points],
            "N_opt (parameters)",
        ),
        ("d_opt_vs_compute.png", fit.tokens_law, [p.tokens for p in fit.points], "D_opt (tokens)"),
    ):
        paths.append(_plot_law(budgets, values, law, label, extrapolate_to, out_dir / name))
    return paths


def _plot_curves(groups: dict[float, list[Run]], fit: IsoFlopsFit, path: Path) -> Path:
    """One loss-vs-N line per budget, the optimum of each starred."""
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(groups)))
    for color, (budget, group) in zip(colors, groups.items()):
        sizes, losses = [r.parameters for r in group], [r.final_loss for r in group]
        ax.plot(sizes, losses, "o-", color=color, label=f"C = {budget:.1e}")
    for point in fit.points:
        ax.plot(point.parameters, point.loss, "k*", markersize=11)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final loss")
    ax.set_title(f"IsoFLOP curves (star: optimum, {fit.method})")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_law(budgets, values, law: PowerLaw, label: str, extrapolate_to: float, path: Path) -> Path:
    """The optimal points against C on log-log axes, and the fitted law drawn out to ``extrapolate_to``."""
    import matplotlib.pyplot as plt

    low, high = math.log10(min(budgets)), math.log10(max(extrapolate_to, max(budgets)))
    grid = np.logspace(low, high, 100)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.loglog(budgets, values, "o", label="compute-optimal runs")
    ax.loglog(grid, law(grid), "-", label=f"fit: {law}")
    end = law(extrapolate_to)
    ax.loglog([extrapolate_to], [end], "s", label=f"C = {extrapolate_to:.0e}: {end:.3g}")
    ax.set_xlabel("compute budget C (FLOPs)")
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_isoflops_report(fit: IsoFlopsFit, boot: IsoFlopsBootstrap | None = None) -> str:
    """The fitted laws, the optimum per budget, and predictions (with intervals when given)."""
    lines = [f"IsoFLOPs fit ({fit.description})"]
    lines.append(f"{'budget C':>10} {'N_opt':>12} {'D_opt':>12} {'loss':>8}")
    for p in fit.points:
        lines.append(f"{p.compute_budget:>10.3g} {p.parameters:>12.4g} {p.tokens:>12.4g} {p.loss:>8.4f}")
    lines.append(f"N_opt(C) = {fit.parameters_law}")
    lines.append(f"D_opt(C) = {fit.tokens_law}")
    if boot is not None:
        pct = f"{boot.level:.0%}"
        lines.append(
            f"exponents with {pct} bootstrap intervals ({boot.num_samples} resamples of the runs within each budget):"
        )
        lines.append(f"  a (N_opt ~ C^a) = {boot.parameters_exponent}")
        lines.append(f"  b (D_opt ~ C^b) = {boot.tokens_exponent}")
        for c, (n, d) in boot.predictions.items():
            lines.append(f"  C = {c:.0e}: N_opt = {n}   D_opt = {d}")
    return "\n".join(lines)
