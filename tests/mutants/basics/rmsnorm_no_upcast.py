"""RMSNorm squares in the input dtype (no fp32 upcast)."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_rmsnorm_upcasts_to_fp32",
]


def run_rmsnorm(d_model, eps, weights, in_features):
    x = in_features
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weights
