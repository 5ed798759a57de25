"""The IsoFLOPs fit takes D = C / N instead of C / (6 N)."""

from __future__ import annotations

from tests.scaling.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/scaling/core/test_scaling.py::test_isoflops_fit_recovers_the_law",
]


_fit = run_fit_isoflops  # noqa: F405


def run_fit_isoflops(records, method="minimum"):
    fit = dict(_fit(records, method))
    fit["tokens_coefficient"] *= 6  # the mistake
    return fit
