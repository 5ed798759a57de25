"""The tokens law is derived from D = C / (6 k C^a) with exponent a instead of 1 - a (an algebra slip
that the Chinchilla-like a = 0.5 hides)."""

from __future__ import annotations

from tests.scaling.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/scaling/core/test_scaling.py::test_isoflops_fit_other_exponent",
]


_fit = run_fit_isoflops  # noqa: F405


def run_fit_isoflops(records, method="minimum"):
    fit = dict(_fit(records, method))
    fit["tokens_exponent"] = fit["parameters_exponent"]  # the mistake: should be 1 - a
    fit["tokens_coefficient"] = 1 / (6 * fit["parameters_coefficient"])
    return fit
