"""AdamW adds weight decay to the gradient (Adam + L2) instead of decoupling it."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_training.py::test_adamw",
]


class AdamL2(torch.optim.Adam):
    pass  # torch.optim.Adam with weight_decay is exactly the coupled L2 version


def get_adamw_cls():
    return AdamL2
