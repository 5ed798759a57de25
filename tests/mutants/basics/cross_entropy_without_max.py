"""cross-entropy takes log(sum(exp(logits))) without subtracting the maximum."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_training.py::test_cross_entropy_is_stable",
]


def run_cross_entropy(inputs, targets):
    log_z = torch.log(torch.exp(inputs).sum(-1))
    return (log_z - inputs.gather(-1, targets[..., None])[..., 0]).mean()
