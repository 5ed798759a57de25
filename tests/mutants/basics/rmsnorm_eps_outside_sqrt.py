"""RMSNorm adds eps outside the square root."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_rmsnorm",
]


def run_rmsnorm(d_model, eps, weights, in_features):
    x = in_features.float()
    return (x / (torch.sqrt(x.pow(2).mean(-1, keepdim=True)) + eps) * weights).to(in_features.dtype)
