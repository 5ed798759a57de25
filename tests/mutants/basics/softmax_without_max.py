"""softmax exponentiates without subtracting the maximum (overflows)."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_softmax",
]


def run_softmax(in_features, dim):
    e = torch.exp(in_features)
    return e / e.sum(dim, keepdim=True)
