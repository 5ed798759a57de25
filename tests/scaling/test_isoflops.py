"""Graders for the IsoFLOPs fit: known laws recovered, the JSON interchange
format, bootstrap intervals, and clear errors on degenerate input."""

from __future__ import annotations

import json
import math

import pytest

from tests.scaling.synthetic import TRUE_LAW, chinchilla_runs, parabola_runs, true_optimal_parameters

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

TRUE_EXPONENT = TRUE_LAW["beta"] / (TRUE_LAW["alpha"] + TRUE_LAW["beta"])  # 0.4516


@pytest.mark.parametrize("method", ["minimum", "parabola"])
def test_recovers_exact_power_law(adapters, method):
    """Every budget's lowest run sits exactly on N* = 0.08 C^0.55 and the loss is a parabola in
    log N, so both methods must recover k, a exactly, and D_opt = C / (6 N_opt)."""
    fit = adapters.run_fit_isoflops(parabola_runs(k=0.08, exponent=0.55), method)
    assert fit["parameters_exponent"] == pytest.approx(0.55, rel=1e-6)
    assert fit["parameters_coefficient"] == pytest.approx(0.08, rel=1e-5)
    # D = C / (6 k C^a) = (1 / 6k) C^(1 - a)
    assert fit["tokens_exponent"] == pytest.approx(0.45, rel=1e-6)
    assert fit["tokens_coefficient"] == pytest.approx(1 / (6 * 0.08), rel=1e-5)
    assert len(fit["optimal"]) == 4
    for c, n, d in fit["optimal"]:
        assert n == pytest.approx(0.08 * c**0.55, rel=1e-6)
        assert d == pytest.approx(c / (6 * n), rel=1e-9)
    n, d = adapters.run_isoflops_predict(parabola_runs(k=0.08, exponent=0.55), 1e24, method)
    assert n == pytest.approx(0.08 * 1e24**0.55, rel=1e-4)
    assert d == pytest.approx(1e24 / (6 * n), rel=1e-4)


def test_parabola_finds_optimum_between_grid_points(adapters):
    """Runs offset from the optimum: the lowest run is off by a grid step, the parabola is not."""
    records = parabola_runs(k=0.5, exponent=0.5, offsets=(-1.1, -0.7, -0.3, 0.1, 0.5, 0.9))
    lowest = adapters.run_fit_isoflops(records, "minimum")
    vertex = adapters.run_fit_isoflops(records, "parabola")
    for (c, n_min, _), (_, n_vertex, _) in zip(lowest["optimal"], vertex["optimal"]):
        assert n_min == pytest.approx(0.5 * c**0.5 * math.exp(0.1), rel=1e-9)  # the lowest run itself
        assert n_vertex == pytest.approx(0.5 * c**0.5, rel=1e-6)


def test_recovers_chinchilla_law(adapters):
    """IsoFLOP sweeps drawn from the Chinchilla law: N_opt ~ C^(beta/(alpha+beta)) = C^0.4516."""
    records = chinchilla_runs(noise=0.0)
    for method, tolerance in (("minimum", 0.02), ("parabola", 0.01)):
        fit = adapters.run_fit_isoflops(records, method)
        assert fit["parameters_exponent"] == pytest.approx(TRUE_EXPONENT, rel=tolerance)
        assert fit["tokens_exponent"] == pytest.approx(1 - TRUE_EXPONENT, rel=tolerance)
    n_opt, _ = adapters.run_isoflops_predict(records, 1e23, "parabola")
    assert n_opt == pytest.approx(true_optimal_parameters(1e23), rel=0.05)
    noisy = adapters.run_fit_isoflops(chinchilla_runs(noise=0.001, seed=1), "parabola")
    assert noisy["parameters_exponent"] == pytest.approx(TRUE_EXPONENT, rel=0.05)


def test_json_interchange_round_trip(adapters, tmp_path):
    records = parabola_runs()
    path = tmp_path / "runs.json"
    path.write_text(json.dumps(records))
    loaded = adapters.run_load_runs(path)
    assert loaded == records
    assert adapters.run_fit_isoflops(loaded) == adapters.run_fit_isoflops(records)


def test_missing_file_and_bad_records(adapters, tmp_path):
    with pytest.raises(FileNotFoundError):
        adapters.run_load_runs(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"parameters": 1e6, "compute_budget": 1e15}]))
    with pytest.raises(ValueError, match="final_loss"):
        adapters.run_load_runs(bad)
    bad.write_text(json.dumps([{"parameters": 1e6, "compute_budget": 1e15, "final_loss": None}]))
    with pytest.raises(ValueError):
        adapters.run_fit_isoflops(adapters.run_load_runs(bad))


def test_one_budget_is_an_error(adapters):
    records = [r for r in parabola_runs() if r["compute_budget"] == 1e16]
    with pytest.raises(ValueError, match="budget"):
        adapters.run_fit_isoflops(records)


@pytest.mark.parametrize("field", ["parameters", "compute_budget", "final_loss"])
@pytest.mark.parametrize("value", [0.0, -3.0, float("nan"), float("inf")])
def test_non_positive_and_non_finite_values_are_errors(adapters, field, value):
    records = parabola_runs()
    records[5] = dict(records[5], **{field: value})
    with pytest.raises(ValueError):
        adapters.run_fit_isoflops(records)


def test_parabola_needs_three_sizes(adapters):
    records = parabola_runs(offsets=(-0.5, 0.5))
    assert adapters.run_fit_isoflops(records, "minimum")["parameters_exponent"] == pytest.approx(
        0.55, rel=1e-6
    )
    with pytest.raises(ValueError):
        adapters.run_fit_isoflops(records, "parabola")


def test_bootstrap_intervals(adapters):
    noisy = chinchilla_runs(noise=0.005, seed=0, sizes_per_budget=9)
    boot = adapters.run_bootstrap_isoflops(noisy, [1e23, 1e24], num_samples=200, level=0.9, seed=0)
    estimate, low, high = boot["parameters_exponent"]
    assert estimate == pytest.approx(adapters.run_fit_isoflops(noisy)["parameters_exponent"])
    assert low <= estimate <= high and high - low > 0.01
    assert low < TRUE_EXPONENT < high
    (n, n_low, n_high), (d, d_low, d_high) = boot["predictions"][1e24]
    assert n_low <= n <= n_high and d_low <= d <= d_high
    assert n_high > n_low


def test_plots_are_written(adapters, tmp_path):
    paths = adapters.run_plot_isoflops(parabola_runs(), tmp_path / "plots")
    assert len(paths) == 3
    for path in paths:
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
