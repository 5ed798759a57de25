"""Linear computes x @ W with W stored (d_in, d_out), loading the (d_out, d_in) weights as is."""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_linear",
]


def run_linear(d_in, d_out, weights, in_features):
    return in_features @ weights.reshape(d_in, d_out)
