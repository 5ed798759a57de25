"""SiLU returns sigmoid(x), forgetting the factor x."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_activation",
]


def run_silu(in_features):
    return torch.sigmoid(in_features)
