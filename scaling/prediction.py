"""From a sweep's runs to a prediction with intervals: seeds averaged, laws fitted, bootstrapped.

Handout section "Constructing scaling laws": the deliverable is a predicted compute-optimal model
size, data size and loss at a budget far beyond the sweep. A prediction without an interval says
nothing about how far it can be trusted, so every number here comes with a bootstrap interval:

1. :func:`aggregate_seeds` -- the runs of one (budget, size) point become its mean loss and spread.
2. :func:`fit_sweep` -- the IsoFLOPs fit (scaling/isoflops.py, parabola vertex per budget) through
   the means gives ``N_opt(C)`` and ``D_opt(C)``; the parametric law ``L = E + A/N^α + B/D^β``
   (scaling/chinchilla.py) through the same means gives the loss at the predicted ``(N_opt, D_opt)``
   (it has the irreducible term ``E`` that a pure power law in C lacks); and the *compute frontier*
   ``L_opt(C) = k·C^(-γ)``, a power law through the budgets' vertex losses, gives it without a floor.
   Far before the loss curve bends, a small sweep cannot tell ``E`` from curvature in its noise: on
   this lab's runs the law's loss 100× out came out 4-21 % too high and the frontier's 0-5 % high
   (scaling/prediction_log.md), but once the curve does bend the frontier runs too low.
   :func:`holdout_check` measures the frontier's miss at the sweep's own top budget, and the
   submission's loss interval spans all three readings (:func:`submitted_loss`).
3. :func:`bootstrap_sweep` -- two-level resampling: within each budget the sizes are drawn with
   replacement (a run that happened to land low moves the vertex: the "runs" level), and within each
   drawn size its seeds are drawn with replacement (the "seeds" level); every resample is refitted,
   and percentile intervals are read off.

Simplification: the budgets themselves are not resampled (with four budgets, a resample with two
would not constrain an exponent); resamples whose parabola has no valley at some budget fall back to
that budget's lowest point, as :func:`scaling.isoflops.optimal_point` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scaling.isoflops import Interval, IsoFlopsFit, PowerLaw, Run, fit_isoflops, fit_power_law


@dataclass(frozen=True)
class SweepPoint:
    """One (budget, size) point of a sweep: the validation losses of its seeds."""

    compute_budget: float
    parameters: float
    tokens: float  # tokens each run really trained on (whole steps)
    losses: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.losses))

    @property
    def spread(self) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        return float(np.std(self.losses, ddof=1)) if len(self.losses) > 1 else 0.0


def aggregate_seeds(records: Sequence[tuple[float, float, float, float]]) -> list[SweepPoint]:
    """``(compute_budget, parameters, tokens, loss)`` records -> one point per (budget, parameters),
    sorted by budget then size. A non-finite loss (a diverged seed) is an error, not dropped."""
    groups: dict[tuple[float, float], list[tuple[float, float]]] = {}
    for budget, parameters, tokens, loss in records:
        if not math.isfinite(loss):
            raise ValueError(
                f"loss {loss} at C={budget:.3g}, N={parameters:,.0f}: leave diverged runs out first"
            )
        groups.setdefault((float(budget), float(parameters)), []).append((float(tokens), float(loss)))
    return [
        SweepPoint(c, n, float(np.mean([t for t, _ in runs])), tuple(loss for _, loss in runs))
        for (c, n), runs in sorted(groups.items())
    ]


@dataclass(frozen=True)
class SweepFit:
    """The IsoFLOPs laws, the parametric loss law and the compute frontier fitted to a sweep's mean
    losses."""

    isoflops: IsoFlopsFit
    loss_law: object  # scaling.chinchilla.ChinchillaFit
    frontier: PowerLaw  # vertex loss against C: L_opt = k·C^γ (γ < 0)

    def predict(self, compute_budget: float) -> tuple[float, float, float]:
        """``(N_opt, D_opt, loss)`` at ``compute_budget``, the loss from the parametric law."""
        n_opt, d_opt = self.isoflops.predict(compute_budget)
        return n_opt, d_opt, float(self.loss_law(n_opt, d_opt))

    def frontier_loss(self, compute_budget: float) -> float:
        """The compute frontier's loss at ``compute_budget``."""
        return float(self.frontier(compute_budget))


def fit_sweep(
    points: Sequence[SweepPoint], loss_starts: Sequence[Sequence[float]] = (), num_starts: int = 16
) -> SweepFit:
    """Fit the IsoFLOPs laws, the compute frontier and the loss law to the points' mean losses
    (``loss_starts``/``num_starts``: see ``fit_chinchilla``)."""
    from scaling.chinchilla import fit_chinchilla

    isoflops, frontier = fit_frontier(points)
    law = fit_chinchilla(
        [p.parameters for p in points],
        [p.tokens for p in points],
        [p.mean for p in points],
        num_starts=num_starts,
        extra_starts=loss_starts,
    )
    return SweepFit(isoflops, law, frontier)


def fit_frontier(points: Sequence[SweepPoint]) -> tuple[IsoFlopsFit, PowerLaw]:
    """The IsoFLOPs fit (a parabola in log N per budget) and the compute frontier through its
    vertex losses (least squares of log loss on log C)."""
    isoflops = fit_isoflops([Run(p.parameters, p.compute_budget, p.mean) for p in points], "parabola")
    vertices = isoflops.points
    return isoflops, fit_power_law([v.compute_budget for v in vertices], [v.loss for v in vertices])


def resample(points: Sequence[SweepPoint], rng: np.random.Generator, sizes: bool = True) -> list[SweepPoint]:
    """One bootstrap draw: per budget, sizes with replacement (if ``sizes``), then each drawn size's
    seeds with replacement. A size drawn twice appears twice (the parabola averages it)."""
    by_budget: dict[float, list[SweepPoint]] = {}
    for p in points:
        by_budget.setdefault(p.compute_budget, []).append(p)
    drawn = []
    for group in by_budget.values():
        chosen = rng.integers(0, len(group), len(group)) if sizes else range(len(group))
        for i in chosen:
            p = group[i]
            losses = tuple(p.losses[j] for j in rng.integers(0, len(p.losses), len(p.losses)))
            drawn.append(SweepPoint(p.compute_budget, p.parameters, p.tokens, losses))
    return drawn


@dataclass(frozen=True)
class SweepBootstrap:
    """Percentile intervals at ``level`` for the exponents, each budget's N_opt, and the prediction."""

    fit: SweepFit
    level: float
    num_samples: int
    parameters_exponent: Interval
    tokens_exponent: Interval
    optima: dict[float, Interval]  # N_opt per swept budget
    target_budget: float
    parameters: Interval  # N_opt at the target
    tokens: Interval  # D_opt at the target
    loss: Interval  # loss at the target, parametric law
    frontier_exponent: Interval  # γ of the compute frontier L_opt ~ C^γ
    frontier: Interval  # loss at the target, compute frontier


def bootstrap_sweep(
    points: Sequence[SweepPoint],
    target_budget: float,
    num_samples: int = 200,
    level: float = 0.9,
    seed: int = 0,
    sizes: bool = True,
) -> SweepBootstrap:
    """Refit on ``num_samples`` draws of :func:`resample` and report percentile intervals."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    fit = fit_sweep(points)
    start = _law_start(fit)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_samples):
        try:
            refit = fit_sweep(resample(points, rng, sizes), loss_starts=start, num_starts=0)
        except ValueError:  # a draw with fewer than 3 distinct sizes at some budget
            continue
        laws = refit.isoflops
        rows.append(
            [
                laws.parameters_law.exponent,
                laws.tokens_law.exponent,
                *refit.predict(target_budget),
                refit.frontier.exponent,
                refit.frontier_loss(target_budget),
                *(p.parameters for p in laws.points),
            ]
        )
    if len(rows) < 2:
        raise ValueError("bootstrap failed: fewer than 2 resamples could be fitted")
    return _intervals(fit, np.array(rows), level, target_budget)


def _intervals(fit: SweepFit, table: np.ndarray, level: float, target_budget: float) -> SweepBootstrap:
    tail = 100 * (1 - level) / 2
    lows, highs = np.percentile(table, tail, axis=0), np.percentile(table, 100 - tail, axis=0)

    def interval(column: int, estimate: float) -> Interval:
        return Interval(float(estimate), float(lows[column]), float(highs[column]))

    laws = fit.isoflops
    n_opt, d_opt, loss = fit.predict(target_budget)
    return SweepBootstrap(
        fit=fit,
        level=level,
        num_samples=len(table),
        parameters_exponent=interval(0, laws.parameters_law.exponent),
        tokens_exponent=interval(1, laws.tokens_law.exponent),
        optima={p.compute_budget: interval(7 + i, p.parameters) for i, p in enumerate(laws.points)},
        target_budget=target_budget,
        parameters=interval(2, n_opt),
        tokens=interval(3, d_opt),
        loss=interval(4, loss),
        frontier_exponent=interval(5, fit.frontier.exponent),
        frontier=interval(6, fit.frontier_loss(target_budget)),
    )


@dataclass(frozen=True)
class Holdout:
    """The sweep's own test of its compute frontier: fitted without the top budget, the loss the
    frontier predicts there (with the bootstrap interval) against the loss the top budget's parabola
    measured; and the target's frontier loss corrected by that miss."""

    budget: float  # the held-out (top) budget
    predicted: Interval  # the frontier's loss there, from the budgets below it
    measured: float  # the vertex loss of its IsoFLOP parabola
    target_budget: float | None = None
    corrected: Interval | None = None  # the target's frontier loss × measured / predicted, per resample

    @property
    def relative_error(self) -> float:
        """``(measured - predicted) / predicted``: negative when the losses fall faster than the line."""
        return (self.measured - self.predicted.estimate) / self.predicted.estimate

    def describe(self) -> str:
        where = where_in_interval(self.measured, self.predicted)
        text = (
            f"held-out check: fitted below C = {self.budget:.3g}, the frontier predicts loss {self.predicted} "
            f"there; its parabola measured {self.measured:.4g} ({self.relative_error:+.1%}): {where}"
        )
        if self.corrected is not None:
            text += f"\n  the frontier corrected by that miss: loss {self.corrected} at C = {self.target_budget:.3g}"
        return text


def holdout_check(
    points: Sequence[SweepPoint],
    target_budget: float | None = None,
    num_samples: int = 100,
    level: float = 0.9,
    seed: int = 0,
) -> Holdout | None:
    """:class:`Holdout` for the top budget of ``points``, or ``None`` with fewer than three budgets
    (a frontier below the held-out budget needs two).

    One bootstrap serves all numbers: each resample (:func:`resample`) is fitted twice, without its
    top budget (the held-out prediction ``H``) and whole (that budget's vertex loss ``V`` and the
    target's frontier loss ``T``), so the corrected loss ``T · V / H`` carries the noise of all three.

    The correction assumes the frontier errs at the target by the same factor as one budget step
    up: the sweeps of this lab fall faster at each step than a line through all their budgets, and
    the miss at the top budget is the latest measure of how much. It was written after the checks
    it fits (scaling/prediction_log.md, section 5, and the fresh test pre-registered there).
    """
    budgets = sorted({p.compute_budget for p in points})
    if len(budgets) < 3:
        return None
    top = budgets[-1]

    def numbers(sample: Sequence[SweepPoint]) -> list[float]:
        whole, frontier = fit_frontier(sample)
        _, part = fit_frontier([p for p in sample if p.compute_budget < top])
        held, vertex = float(part(top)), whole.points[-1].loss
        target = float(frontier(target_budget)) * vertex / held if target_budget else math.nan
        return [held, vertex, target]

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_samples):
        try:
            rows.append(numbers(resample(points, rng)))
        except ValueError:  # a draw with fewer than 3 distinct sizes at some budget
            continue
    if len(rows) < 2:
        raise ValueError("held-out bootstrap failed: fewer than 2 resamples could be fitted")
    tail = 100 * (1 - level) / 2
    lows, highs = np.percentile(rows, tail, axis=0), np.percentile(rows, 100 - tail, axis=0)
    held, vertex, target = numbers(points)
    corrected = Interval(target, float(lows[2]), float(highs[2])) if target_budget else None
    return Holdout(top, Interval(held, float(lows[0]), float(highs[0])), vertex, target_budget, corrected)


def _law_start(fit: SweepFit) -> list[list[float]]:
    """A fitted loss law as the one start of a resample's refit (fast, and near the answer)."""
    law = fit.loss_law
    return [[math.log(law.E), math.log(law.A), math.log(law.B), law.alpha, law.beta]]


def is_wide(interval: Interval, half_width: float = 0.1) -> bool:
    """An exponent interval wider than ``± half_width``: the fit does not pin the exponent."""
    return (interval.high - interval.low) / 2 > half_width


def format_sweep_report(boot: SweepBootstrap, holdout: Holdout | None = None) -> str:
    """The exponents and the prediction with their intervals; wide exponent intervals flagged; the
    held-out check of the loss law if given."""
    pct = f"{boot.level:.0%}"
    lines = [
        f"fits with {pct} bootstrap intervals ({boot.num_samples} resamples of sizes and seeds within each budget):"
    ]
    for name, interval in (
        ("a (N_opt ~ C^a)", boot.parameters_exponent),
        ("b (D_opt ~ C^b)", boot.tokens_exponent),
    ):
        flag = (
            "  <- WIDE: interval wider than +-0.1, the sweep does not pin this exponent"
            if is_wide(interval)
            else ""
        )
        lines.append(f"  {name} = {interval}  (width {interval.high - interval.low:.3f}){flag}")
    lines.append("  N_opt per budget: " + "  ".join(f"C={c:.3g}: {i}" for c, i in boot.optima.items()))
    law = boot.fit.loss_law
    lines.append(
        f"  loss law: L = {law.E:.3f} + {law.A:.4g}/N^{law.alpha:.3f} + {law.B:.4g}/D^{law.beta:.3f}"
    )
    lines.append(f"prediction at C = {boot.target_budget:.3g}:")
    lines.append(f"  N_opt = {boot.parameters}")
    lines.append(f"  D_opt = {boot.tokens}")
    lines.append(f"  loss  = {submitted_loss(boot, holdout)}  (submitted: the hull of the readings below)")
    lines.append(f"    compute frontier: {boot.frontier}  (L_opt ~ C^{boot.frontier_exponent})")
    lines.append(f"    loss law:         {boot.loss}")
    if holdout is not None:
        lines.append(holdout.describe())
    return "\n".join(lines)


def submitted_loss(boot: SweepBootstrap, holdout: Holdout | None = None) -> Interval:
    """The loss a submission stakes: the compute frontier corrected by its held-out miss (the
    frontier alone without a held-out check), with an interval that spans the bootstrap intervals
    of the corrected frontier, the frontier and the loss law.

    The fits disagree about what a small sweep cannot see, how the loss curve goes on bending. The
    law puts a floor ``E`` under the sweep's curvature and on this lab's sweeps flattens far too
    early; the frontier, a straight line in log-log, has no floor and runs too low once the curve
    bends toward one; and these sweeps' losses fall faster at each budget step than a line through
    all of them, which the held-out miss measures. Each interval is resampling noise only; the hull
    covers all three readings. The record of which rule was tested how, and which checks were
    predicted before their runs, is scaling/prediction_log.md.
    """
    estimate, intervals = boot.frontier.estimate, [boot.frontier, boot.loss]
    if holdout is not None and holdout.corrected is not None:
        estimate = holdout.corrected.estimate
        intervals.append(holdout.corrected)
    return Interval(estimate, min(i.low for i in intervals), max(i.high for i in intervals))


def make_submission(boot: SweepBootstrap, holdout: Holdout | None = None) -> dict:
    """The student's submission as plain JSON data: the prediction at the target with its intervals
    (and the frontier's held-out check, if given). ``loss`` is :func:`submitted_loss`, the
    interval a check run is graded against; ``frontier_loss`` and ``law_loss`` are the two
    bootstrap intervals it spans."""

    def triple(interval: Interval) -> dict:
        return {"estimate": interval.estimate, "low": interval.low, "high": interval.high}

    submission = {
        "target_budget": boot.target_budget,
        "level": boot.level,
        "parameters": triple(boot.parameters),
        "tokens": triple(boot.tokens),
        "loss": triple(submitted_loss(boot, holdout)),
        "frontier_loss": triple(boot.frontier),
        "law_loss": triple(boot.loss),
        "parameters_exponent": triple(boot.parameters_exponent),
        "tokens_exponent": triple(boot.tokens_exponent),
        "bootstrap_samples": boot.num_samples,
    }
    if holdout is not None:
        submission["holdout"] = {
            "budget": holdout.budget,
            "predicted_loss": triple(holdout.predicted),
            "measured_loss": holdout.measured,
        }
        if holdout.corrected is not None:
            submission["holdout"]["corrected_loss"] = triple(holdout.corrected)
    return submission


def grade_submission(submission: dict, loss: float, parameters: float) -> dict:
    """Where a check run at the target budget (its validation ``loss``, its size ``parameters``) falls
    in the submission's intervals: ``{"inside": bool, "loss": "...", "parameters": "..."}``, plus
    ``"frontier_loss"`` and ``"law_loss"`` (where it falls in each fit's own interval) when the
    submission has them."""

    def interval(name: str) -> Interval:
        return Interval(**{k: float(submission[name][k]) for k in ("estimate", "low", "high")})

    loss_interval = interval("loss")
    grade = {
        "inside": loss_interval.low <= loss <= loss_interval.high,
        "loss": where_in_interval(loss, loss_interval),
        "parameters": where_in_interval(parameters, interval("parameters")),
    }
    for name in ("frontier_loss", "law_loss"):
        if name in submission:
            grade[name] = where_in_interval(loss, interval(name))
    return grade


def where_in_interval(value: float, interval: Interval) -> str:
    """``"inside (at 37% of the interval)"``, ``"below"`` or ``"above"`` the interval."""
    if value < interval.low:
        return "below"
    if value > interval.high:
        return "above"
    position = (
        (value - interval.low) / (interval.high - interval.low) if interval.high > interval.low else 0.5
    )
    return f"inside (at {position:.0%} of the interval)"


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib is imported only here, with a file backend)


def plot_sweep(
    points: Sequence[SweepPoint], boot: SweepBootstrap, out_dir, holdout: Holdout | None = None
) -> list:
    """Save ``sweep_isoflops.png`` (mean loss ± seed spread per size, the fitted parabola and the
    optimum with its interval, per budget), ``sweep_n_opt.png`` (N_opt per budget with intervals,
    the fitted law, and the prediction at the target with its interval) and ``sweep_loss.png`` (the
    vertex losses, the compute frontier and the loss law out to the target, and the submitted
    interval there). Returns the paths."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")  # a file backend: no display needed
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _plot_profiles(points, boot, out_dir / "sweep_isoflops.png"),
        _plot_optima(boot, out_dir / "sweep_n_opt.png"),
        _plot_loss(boot, holdout, out_dir / "sweep_loss.png"),
    ]


def _plot_profiles(points: Sequence[SweepPoint], boot: SweepBootstrap, path):
    import matplotlib.pyplot as plt

    from scaling.isoflops import fit_parabola

    budgets = sorted({p.compute_budget for p in points})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(budgets)))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for color, budget, optimum in zip(colors, budgets, boot.fit.isoflops.points):
        group = [p for p in points if p.compute_budget == budget]
        sizes, means = [p.parameters for p in group], [p.mean for p in group]
        ax.errorbar(
            sizes,
            means,
            yerr=[p.spread for p in group],
            fmt="o",
            color=color,
            capsize=3,
            label=f"C = {budget:.3g}",
        )
        (c2, c1, c0), centre, window = fit_parabola(sizes, means)
        x = np.linspace(math.log(window[0]), math.log(window[-1]), 50) - centre
        ax.plot(np.exp(x + centre), c2 * x**2 + c1 * x + c0, "-", color=color, linewidth=1)
        interval = boot.optima[budget]
        ax.errorbar(
            [optimum.parameters],
            [optimum.loss],
            xerr=[[optimum.parameters - interval.low], [interval.high - optimum.parameters]],
            fmt="*",
            color="k",
            markersize=10,
            capsize=3,
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (all, as in C = 6ND)")
    ax.set_ylabel("validation loss (mean over seeds, bars: spread)")
    ax.set_title(f"IsoFLOP profiles (star: parabola vertex, bars: {boot.level:.0%} interval)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_optima(boot: SweepBootstrap, path):
    import matplotlib.pyplot as plt

    budgets = np.array(sorted(boot.optima))
    estimates = np.array([boot.optima[c].estimate for c in budgets])
    errors = [
        estimates - [boot.optima[c].low for c in budgets],
        [boot.optima[c].high for c in budgets] - estimates,
    ]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.errorbar(budgets, estimates, yerr=errors, fmt="o", capsize=3, label="N_opt per budget")
    grid = np.logspace(math.log10(budgets.min()), math.log10(boot.target_budget), 100)
    law = boot.fit.isoflops.parameters_law
    ax.plot(
        grid,
        law(grid),
        "-",
        label=f"fit: {law}  (a in [{boot.parameters_exponent.low:.3f}, {boot.parameters_exponent.high:.3f}])",
    )
    p = boot.parameters
    _finish_against_budget(ax, boot.target_budget, p, f"prediction: {p.estimate:.3g}", "N_opt (parameters)")
    return _save(fig, path)


def _plot_loss(boot: SweepBootstrap, holdout: Holdout | None, path):
    import matplotlib.pyplot as plt

    fit = boot.fit
    vertices = fit.isoflops.points
    budgets = np.array([v.compute_budget for v in vertices])
    grid = np.logspace(math.log10(budgets.min()), math.log10(boot.target_budget), 100)
    law = [fit.predict(c)[2] for c in grid]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(budgets, [v.loss for v in vertices], "o", color="k", label="vertex loss per budget")
    ax.plot(grid, fit.frontier(grid), "-", label=f"compute frontier: {fit.frontier}")
    ax.plot(grid, law, "--", label=f"loss law at N_opt(C) (floor E = {fit.loss_law.E:.3f})")
    loss = submitted_loss(boot, holdout)
    _finish_against_budget(
        ax, boot.target_budget, loss, f"submitted: {loss}", "validation loss at the optimum"
    )
    return _save(fig, path)


def _finish_against_budget(ax, target_budget: float, prediction: Interval, what: str, ylabel: str):
    """The prediction at the target with its interval as a bar; log-log axes against C; legend."""
    ax.errorbar(
        [target_budget],
        [prediction.estimate],
        yerr=[[prediction.estimate - prediction.low], [prediction.high - prediction.estimate]],
        fmt="s",
        capsize=4,
        label=f"{what} at C = {target_budget:.3g}",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute budget C (FLOPs, 6ND)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def _save(fig, path):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
