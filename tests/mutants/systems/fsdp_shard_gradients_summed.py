"""FSDP reduce-scatters the weight gradients with SUM and never divides by the world size."""

from __future__ import annotations

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_fsdp.py::test_fsdp_fp32_matches_single_process_training",
]


_after = fsdp_on_after_backward  # noqa: F405


def fsdp_on_after_backward(fsdp_model, optimizer):
    _after(fsdp_model, optimizer)
    for unit in fsdp_model.units:
        if unit.shard.grad is not None:
            unit.shard.grad.mul_(fsdp_model.world_size)  # the mistake: the sum, not the mean
