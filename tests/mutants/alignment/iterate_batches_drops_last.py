"""iterate_batches drops the last, smaller batch (``drop_last=True`` copied from a training loop), so
an epoch misses up to batch_size - 1 windows."""

from __future__ import annotations

import torch

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft_data.py::test_iterate_batches",
]


def run_iterate_batches(dataset, batch_size, shuffle):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=True)
