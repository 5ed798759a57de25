"""The parametric scaling law ``L(N, D) = E + A / N^α + B / D^β``, fitted as in Chinchilla.

Hoffmann et al. (2022), approach 3 (section 3.3 and appendix D.2); handout section "Parametric fit".
With ``a = log A``, ``b = log B``, ``e = log E`` the prediction in log space is a log-sum-exp::

    log L̂(N, D) = LSE(a − α·log N,  b − β·log D,  e)

and the fit minimises ``Σ_i Huber_δ(log L̂(N_i, D_i) − log L_i)`` with ``δ = 1e-3`` using L-BFGS,
started from a grid of initialisations (the best is kept). The gradient is written out by hand.
Under ``C = 6ND`` the loss-minimising split is (appendix D.2)::

    N_opt(C) = G · (C/6)^{β/(α+β)},   D_opt(C) = G⁻¹ · (C/6)^{α/(α+β)},   G = (αA / (βB))^{1/(α+β)}

Besiroglu et al. (2024, "Chinchilla scaling: a replication attempt") point out that the original
intervals were implausibly narrow; :func:`bootstrap_chinchilla` refits on resampled runs and
reports percentile intervals so a student sees how loosely small sweeps pin the exponents.

Simplification: the full initialisation grid is evaluated in one vectorised pass and L-BFGS is run
from its best ``num_starts`` points rather than from all of them (the paper's grid has 4,500).

    >>> rng = np.random.default_rng(0)
    >>> n = 10 ** rng.uniform(7, 10, 200); d = 10 ** rng.uniform(8, 11, 200)
    >>> law = ChinchillaLaw(E=1.7, A=400.0, B=410.0, alpha=0.34, beta=0.28)
    >>> fit = fit_chinchilla(n, d, law(n, d))
    >>> round(fit.alpha, 2), round(fit.beta, 2), round(fit.E, 2)
    (0.34, 0.28, 1.7)
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

try:  # scipy's L-BFGS-B calls BLAS on 5-vectors; a multi-threaded BLAS makes that ~20x slower
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
    threadpool_limits = None


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    return threadpool_limits(limits=1, user_api="blas") if threadpool_limits else contextlib.nullcontext()


HUBER_DELTA = 1e-3
# Hoffmann et al.'s grid: alpha, beta in {0, 0.5, ..., 2}; e in {-1, -0.5, ..., 1}; a, b in {0, 5, ..., 25}.
DEFAULT_GRID = {
    "e": np.arange(-1.0, 1.01, 0.5),
    "a": np.arange(0.0, 25.1, 5.0),
    "b": np.arange(0.0, 25.1, 5.0),
    "alpha": np.arange(0.0, 2.01, 0.5),
    "beta": np.arange(0.0, 2.01, 0.5),
}
_ORDER = ("e", "a", "b", "alpha", "beta")


@dataclass(frozen=True)
class ChinchillaLaw:
    """``L(N, D) = E + A / N**alpha + B / D**beta``."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __call__(self, parameters: float | np.ndarray, tokens: float | np.ndarray) -> float | np.ndarray:
        n, d = np.asarray(parameters, dtype=float), np.asarray(tokens, dtype=float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def parameters_exponent(self) -> float:
        """``a`` in ``N_opt ∝ C^a``: β / (α + β)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def tokens_exponent(self) -> float:
        """``b`` in ``D_opt ∝ C^b``: α / (α + β)."""
        return self.alpha / (self.alpha + self.beta)

    def compute_optimal(self, compute_budget: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N_opt, D_opt)`` minimising L subject to ``6·N·D = C``."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        c6 = np.asarray(compute_budget, dtype=float) / 6.0
        return g * c6**self.parameters_exponent, c6**self.tokens_exponent / g

    def __str__(self) -> str:
        return f"L = {self.E:.4g} + {self.A:.4g}/N^{self.alpha:.4f} + {self.B:.4g}/D^{self.beta:.4f}"


def _check_inputs(parameters, tokens, losses) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays = [np.asarray(v, dtype=float) for v in (parameters, tokens, losses)]
    names = ("parameters", "tokens", "losses")
    for name, array in zip(names, arrays):
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if np.any(array <= 0):
            raise ValueError(f"{name} must be positive (the fit works in log space)")
    if not len(arrays[0]) == len(arrays[1]) == len(arrays[2]):
        raise ValueError(f"parameters, tokens and losses differ in length: {[len(a) for a in arrays]}")
    if len(arrays[0]) < 5:
        raise ValueError(f"need at least 5 runs to fit 5 parameters, got {len(arrays[0])}")
    if len(np.unique(arrays[0])) < 2 or len(np.unique(arrays[1])) < 2:
        raise ValueError("need runs at 2 or more distinct model sizes and token counts")
    return arrays[0], arrays[1], arrays[2]


def huber_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float = HUBER_DELTA
) -> tuple[float, np.ndarray]:
    """Summed Huber loss of the log-space residuals at ``theta = (e, a, b, alpha, beta)``, and its gradient."""
    e, a, b, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])  # (3, runs)
    shifted = np.exp(terms - terms.max(axis=0))  # subtract the max so exp cannot overflow
    total = shifted.sum(axis=0)
    lse = np.log(total) + terms.max(axis=0)
    weights = shifted / total  # softmax over the three terms: d lse / d term
    r = lse - log_l
    small = np.abs(r) <= delta
    loss = np.where(small, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)).sum()
    dr = np.where(small, r, delta * np.sign(r))  # dHuber / dr
    grad = np.array(
        [
            (dr * weights[2]).sum(),
            (dr * weights[0]).sum(),
            (dr * weights[1]).sum(),
            -(dr * weights[0] * log_n).sum(),
            -(dr * weights[1] * log_d).sum(),
        ]
    )
    return float(loss), grad


def _grid_losses(grid: np.ndarray, log_n, log_d, log_l, delta: float) -> np.ndarray:
    """Objective at every grid row (vectorised over rows)."""
    e, a, b, alpha, beta = (grid[:, i : i + 1] for i in range(5))
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.broadcast_to(e, (len(grid), len(log_n)))])
    top = terms.max(axis=0)
    r = np.log(np.exp(terms - top).sum(axis=0)) + top - log_l
    return np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta)).sum(axis=1)


@dataclass(frozen=True)
class ChinchillaFit(ChinchillaLaw):
    """A fitted law plus how the fit went."""

    objective: float = math.nan  # summed Huber loss at the optimum
    num_runs: int = 0


def fit_chinchilla(
    parameters: Sequence[float],
    tokens: Sequence[float],
    losses: Sequence[float],
    delta: float = HUBER_DELTA,
    grid: dict[str, np.ndarray] | None = None,
    num_starts: int = 16,
    extra_starts: Sequence[Sequence[float]] = (),
) -> ChinchillaFit:
    """Fit ``E, A, B, α, β`` to runs ``(N_i, D_i, L_i)`` by Huber loss on log L with L-BFGS.

    The objective is evaluated on the full initialisation ``grid`` (Hoffmann et al.'s by default);
    L-BFGS runs from the ``num_starts`` best grid points (and any ``extra_starts``, given as
    ``(e, a, b, alpha, beta)``), and the lowest final objective wins.
    """
    n, d, losses = _check_inputs(parameters, tokens, losses)
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(losses)
    grid = DEFAULT_GRID if grid is None else grid
    points = np.array(list(itertools.product(*(np.asarray(grid[k], dtype=float) for k in _ORDER))))
    scores = _grid_losses(points, log_n, log_d, log_l, delta)
    starts = list(points[np.argsort(scores)[:num_starts]]) + [
        np.asarray(s, dtype=float) for s in extra_starts
    ]
    best = None
    with _single_threaded_blas():
        for start in starts:
            result = minimize(
                huber_objective,
                start,
                args=(log_n, log_d, log_l, delta),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12},
            )
            if np.all(np.isfinite(result.x)) and (best is None or result.fun < best.fun):
                best = result
    if best is None:
        raise ValueError("the Chinchilla fit diverged from every initialisation")
    e, a, b, alpha, beta = best.x
    return ChinchillaFit(
        E=math.exp(e),
        A=math.exp(a),
        B=math.exp(b),
        alpha=float(alpha),
        beta=float(beta),
        objective=float(best.fun),
        num_runs=len(n),
    )


def _theta(law: ChinchillaLaw) -> list[float]:
    return [math.log(law.E), math.log(law.A), math.log(law.B), law.alpha, law.beta]


@dataclass(frozen=True)
class ChinchillaBootstrap:
    """Percentile intervals (at ``level``) of each fitted quantity: ``intervals[name] = (low, high)``."""

    fit: ChinchillaFit
    level: float
    num_samples: int
    intervals: dict[str, tuple[float, float]]


def bootstrap_chinchilla(
    parameters: Sequence[float],
    tokens: Sequence[float],
    losses: Sequence[float],
    num_samples: int = 100,
    level: float = 0.9,
    seed: int = 0,
    delta: float = HUBER_DELTA,
    num_starts: int = 4,
) -> ChinchillaBootstrap:
    """Refit on runs resampled with replacement; intervals for E, A, B, alpha, beta and the
    compute-optimal exponents ``a = β/(α+β)`` and ``b = α/(α+β)``.

    Each refit starts from the full-data optimum and the ``num_starts`` best grid points.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    n, d, losses = _check_inputs(parameters, tokens, losses)
    fit = fit_chinchilla(n, d, losses, delta)
    rng = np.random.default_rng(seed)
    names = ("E", "A", "B", "alpha", "beta", "parameters_exponent", "tokens_exponent")
    rows = []
    for _ in range(num_samples):
        idx = rng.integers(0, len(n), len(n))
        try:
            refit = fit_chinchilla(
                n[idx], d[idx], losses[idx], delta, num_starts=num_starts, extra_starts=[_theta(fit)]
            )
        except ValueError:  # a resample with too few distinct sizes
            continue
        rows.append([getattr(refit, k) for k in names])
    if len(rows) < 2:
        raise ValueError("bootstrap failed: fewer than 2 resamples could be fitted")
    table = np.array(rows)
    tail = 100 * (1 - level) / 2
    lows, highs = np.percentile(table, tail, axis=0), np.percentile(table, 100 - tail, axis=0)
    intervals = {k: (float(lo), float(hi)) for k, lo, hi in zip(names, lows, highs)}
    return ChinchillaBootstrap(fit=fit, level=level, num_samples=len(rows), intervals=intervals)


def format_chinchilla_report(
    boot: ChinchillaBootstrap, compute_budgets: Sequence[float] = (1e23, 1e24)
) -> str:
    """The fitted law with intervals, the implied optimal split and predictions."""
    fit, pct = boot.fit, f"{boot.level:.0%}"
    lines = [
        f"Chinchilla parametric fit (Huber delta {HUBER_DELTA:g} on log L, L-BFGS from a grid; {fit.num_runs} runs)"
    ]
    lines.append(f"  {fit}")
    lines.append(f"  {pct} bootstrap intervals ({boot.num_samples} resamples):")
    for name in ("E", "A", "B", "alpha", "beta"):
        low, high = boot.intervals[name]
        lines.append(f"    {name:<6} {getattr(fit, name):>10.4g}  [{low:.4g}, {high:.4g}]")
    low, high = boot.intervals["parameters_exponent"]
    lines.append(
        f"  N_opt ~ C^(beta/(alpha+beta)) = C^{fit.parameters_exponent:.4f}  [{low:.4f}, {high:.4f}]"
    )
    low, high = boot.intervals["tokens_exponent"]
    lines.append(f"  D_opt ~ C^(alpha/(alpha+beta)) = C^{fit.tokens_exponent:.4f}  [{low:.4f}, {high:.4f}]")
    for c in compute_budgets:
        n, d = fit.compute_optimal(c)
        lines.append(f"  C = {c:.0e}: N_opt = {float(n):.4g}   D_opt = {float(d):.4g}")
    return "\n".join(lines)
