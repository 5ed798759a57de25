"""SwiGLU applies SiLU to W3 x and gates with W1 x."""

from __future__ import annotations

import torch.nn.functional as F

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_feedforward",
]


def run_swiglu(d_model, d_ff, w1_weight, w2_weight, w3_weight, in_features):
    x = in_features
    return (F.silu(x @ w3_weight.T) * (x @ w1_weight.T)) @ w2_weight.T
