"""masked_normalize divides the masked sum by the number of masked elements (a mean) instead of
by normalize_constant."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft.py::test_masked_normalize_hand_computed",
]

_normalize = run_masked_normalize  # noqa: F405


def run_masked_normalize(tensor, mask, dim=None, normalize_constant=1.0):
    count = mask.sum() if dim is None else mask.sum(dim)
    return _normalize(tensor, mask, dim, 1.0) / count  # the mistake: the count, not normalize_constant
