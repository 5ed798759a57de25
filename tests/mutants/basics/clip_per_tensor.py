"""Gradient clipping clips each parameter's gradient to the norm on its own, not the global norm."""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_training.py::test_gradient_clipping",
]


def run_gradient_clipping(parameters, max_l2_norm):
    for p in parameters:
        if p.grad is not None:
            norm = p.grad.norm()
            if norm > max_l2_norm:
                p.grad.mul_(max_l2_norm / (norm + 1e-6))
