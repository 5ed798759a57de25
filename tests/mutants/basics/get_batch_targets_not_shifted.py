"""get_batch returns the inputs as the targets (no shift by one)."""

from __future__ import annotations

import numpy as np
import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_training.py::test_get_batch_windows",
]


def run_get_batch(dataset, batch_size, context_length, device):
    starts = np.random.randint(0, len(dataset) - context_length, size=batch_size)
    x = torch.from_numpy(np.stack([dataset[s : s + context_length] for s in starts]).astype(np.int64))
    return x.to(device), x.clone().to(device)
