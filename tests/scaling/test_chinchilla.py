"""Graders for the parametric (Chinchilla approach 3) fit: parameters of a
known law recovered from noisy runs, agreement with the IsoFLOPs fit, bootstrap intervals, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.scaling.synthetic import TRUE_LAW, chinchilla_runs, law_loss, true_optimal_parameters

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

TRUE_EXPONENT = TRUE_LAW["beta"] / (TRUE_LAW["alpha"] + TRUE_LAW["beta"])


def columns(records):
    n = [r["parameters"] for r in records]
    d = [r["compute_budget"] / (6 * r["parameters"]) for r in records]
    return n, d, [r["final_loss"] for r in records]


def test_recovers_exact_law(adapters):
    fit = adapters.run_fit_chinchilla(*columns(chinchilla_runs(noise=0.0)))
    for name, value in TRUE_LAW.items():
        assert fit[name] == pytest.approx(value, rel=1e-3), name
    assert fit["parameters_exponent"] == pytest.approx(TRUE_EXPONENT, rel=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_law_from_noisy_runs(adapters, seed):
    """0.5% multiplicative noise on 65 runs: every parameter within a few percent."""
    fit = adapters.run_fit_chinchilla(*columns(chinchilla_runs(noise=0.005, seed=seed)))
    tolerances = {"E": 0.02, "A": 0.1, "B": 0.1, "alpha": 0.03, "beta": 0.03}
    for name, tolerance in tolerances.items():
        assert fit[name] == pytest.approx(TRUE_LAW[name], rel=tolerance), name
    assert fit["parameters_exponent"] == pytest.approx(TRUE_EXPONENT, rel=0.02)


def test_recovers_a_different_law_from_scattered_runs(adapters):
    """Runs scattered over (N, D) rather than on IsoFLOP lines; a law far from Chinchilla's."""
    law = {"E": 2.5, "A": 60.0, "B": 900.0, "alpha": 0.25, "beta": 0.4}
    rng = np.random.default_rng(3)
    n, d = 10 ** rng.uniform(6, 9, 80), 10 ** rng.uniform(7, 10, 80)
    losses = law_loss(n, d, law) * np.exp(rng.normal(0, 0.002, 80))
    fit = adapters.run_fit_chinchilla(n, d, losses)
    for name in ("E", "alpha", "beta"):
        assert fit[name] == pytest.approx(law[name], rel=0.03), name
    for name in ("A", "B"):
        assert fit[name] == pytest.approx(law[name], rel=0.15), name


def test_compute_optimal_split(adapters):
    n_opt, d_opt = adapters.run_chinchilla_compute_optimal(TRUE_LAW, 1e23)
    assert n_opt == pytest.approx(true_optimal_parameters(1e23), rel=1e-9)
    assert 6 * n_opt * d_opt == pytest.approx(1e23, rel=1e-9)
    # It really is the minimum along the IsoFLOP line.
    for factor in (0.9, 1.1):
        n = n_opt * factor
        assert law_loss(n, 1e23 / (6 * n)) > law_loss(n_opt, d_opt)


def test_agrees_with_isoflops_fit(adapters):
    """Both approaches on the same sweeps: same exponent within 0.02, same N_opt(1e23) within 15%."""
    records = chinchilla_runs(noise=0.001, seed=1)
    iso = adapters.run_fit_isoflops(records, "parabola")
    par = adapters.run_fit_chinchilla(*columns(records))
    assert iso["parameters_exponent"] == pytest.approx(par["parameters_exponent"], abs=0.02)
    n_iso, _ = adapters.run_isoflops_predict(records, 1e23, "parabola")
    n_par, _ = adapters.run_chinchilla_compute_optimal(par, 1e23)
    assert n_iso == pytest.approx(n_par, rel=0.15)


@pytest.mark.slow
def test_bootstrap_intervals(adapters):
    n, d, losses = columns(chinchilla_runs(noise=0.005, seed=0, sizes_per_budget=7))
    fit = adapters.run_fit_chinchilla(n, d, losses)
    intervals = adapters.run_bootstrap_chinchilla(n, d, losses, num_samples=15, level=0.9, seed=0)
    for name in ("E", "alpha", "beta", "parameters_exponent"):
        low, high = intervals[name]
        assert low < high, name
        assert low - 1e-6 <= fit[name] <= high + 1e-6, name
    for name in ("alpha", "beta"):
        low, high = intervals[name]
        assert low < TRUE_LAW[name] < high, name
        assert high - low < 0.1, name


@pytest.mark.parametrize(
    "change",
    [
        {"index": 3, "column": 2, "value": float("nan")},
        {"index": 0, "column": 0, "value": 0.0},
        {"index": 7, "column": 1, "value": -5.0},
        {"index": 2, "column": 2, "value": float("inf")},
    ],
)
def test_bad_values_are_errors(adapters, change):
    cols = [list(c) for c in columns(chinchilla_runs(budgets=(1e18, 1e19), sizes_per_budget=5))]
    cols[change["column"]][change["index"]] = change["value"]
    with pytest.raises(ValueError):
        adapters.run_fit_chinchilla(*cols)


def test_too_few_runs_and_mismatched_lengths(adapters):
    n, d, losses = columns(chinchilla_runs(budgets=(1e18,), sizes_per_budget=4))
    with pytest.raises(ValueError):
        adapters.run_fit_chinchilla(n, d, losses)  # 4 runs for 5 parameters
    n, d, losses = columns(chinchilla_runs(budgets=(1e18, 1e19), sizes_per_budget=5))
    with pytest.raises(ValueError):
        adapters.run_fit_chinchilla(n, d[:-1], losses)
