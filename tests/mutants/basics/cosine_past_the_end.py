"""The cosine keeps going after cosine_cycle_iters instead of holding the minimum."""

from __future__ import annotations

import math

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_training.py::test_cosine_schedule",
]


def run_get_lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters):
    if it < warmup_iters:
        return it / warmup_iters * max_learning_rate
    progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)
    return min_learning_rate + 0.5 * (1 + math.cos(math.pi * progress)) * (max_learning_rate - min_learning_rate)
