"""Synthetic scaling-law data with known answers (test-only; touches no implementation).

``chinchilla_runs`` draws IsoFLOP sweeps from L(N, D) = E + A/N^alpha + B/D^beta with D = C/(6N)
and multiplicative log-normal noise; ``TRUE_LAW`` uses the constants of Hoffmann et al. (2022),
table A3. The compute-optimal N for this law is closed-form (appendix D.2), written out here so
the tests do not rely on the implementation under test.
"""

from __future__ import annotations

import numpy as np

TRUE_LAW = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def law_loss(n, d, law=TRUE_LAW):
    n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
    return law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]


def true_optimal_parameters(c, law=TRUE_LAW):
    """argmin_N L(N, C/(6N)): G * (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta))."""
    a, b = law["alpha"], law["beta"]
    g = (a * law["A"] / (b * law["B"])) ** (1 / (a + b))
    return g * (np.asarray(c, dtype=float) / 6) ** (b / (a + b))


def chinchilla_runs(
    budgets=(1e18, 1e19, 1e20, 1e21, 1e22), sizes_per_budget=13, span=1.2, noise=0.0, seed=0, law=TRUE_LAW
):
    """IsoFLOP sweeps: per budget, ``sizes_per_budget`` sizes log-spaced over ``10**±span`` around a
    deliberately off-centre guess of the optimum (so the grid never sits exactly on it)."""
    rng = np.random.default_rng(seed)
    records = []
    for c in budgets:
        centre = true_optimal_parameters(c, law) * 10**0.13
        for n in centre * np.logspace(-span, span, sizes_per_budget):
            d = c / (6 * n)
            loss = (
                law_loss(n, d, law) * float(np.exp(rng.normal(0.0, noise)))
                if noise
                else float(law_loss(n, d, law))
            )
            records.append({"parameters": float(n), "compute_budget": float(c), "final_loss": float(loss)})
    return records


def parabola_runs(
    k=0.08, exponent=0.55, budgets=(1e15, 1e16, 1e17, 1e18), offsets=(-0.9, -0.5, -0.2, 0.0, 0.25, 0.6, 1.0)
):
    """Loss exactly quadratic in log N around N* = k C^exponent (so a parabola recovers N* exactly,
    and the lowest run is at offset 0)."""
    records = []
    for i, c in enumerate(budgets):
        n_star = k * c**exponent
        for dx in offsets:
            loss = 3.0 - 0.1 * i + 0.05 * dx**2
            records.append(
                {"parameters": float(n_star * np.exp(dx)), "compute_budget": float(c), "final_loss": loss}
            )
    return records
