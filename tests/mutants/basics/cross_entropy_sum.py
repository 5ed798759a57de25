"""cross-entropy sums over the batch instead of averaging."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_training.py::test_cross_entropy",
]


def run_cross_entropy(inputs, targets):
    log_probs = torch.log_softmax(inputs, dim=-1)
    return -log_probs.gather(-1, targets[..., None]).sum()
