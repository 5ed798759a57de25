"""masked_mean divides the masked sum by the number of all elements, not of masked ones."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_grpo.py::test_masked_mean_and_empty_rows",
]


def run_masked_mean(tensor, mask, dim=None):
    masked = tensor * mask
    return masked.mean() if dim is None else masked.mean(dim)
