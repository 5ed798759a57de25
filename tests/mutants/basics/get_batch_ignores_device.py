"""get_batch builds the batch on the CPU and never moves it to ``device``, so an unusable device
goes unnoticed (and a GPU run trains on CPU tensors)."""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_training.py::test_get_batch_unusable_device_raises",
]

_get_batch = run_get_batch  # noqa: F405


def run_get_batch(dataset, batch_size, context_length, device):
    return _get_batch(dataset, batch_size, context_length, "cpu")  # the mistake: device dropped
