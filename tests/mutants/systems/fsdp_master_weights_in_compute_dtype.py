"""FSDP with a compute dtype casts the whole model to it before sharding, so the master weights and
the optimizer's updates are bf16/fp16 instead of fp32."""

from __future__ import annotations

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_fsdp.py::test_fsdp_low_precision_matches_mixed_precision_emulation",
]


_get_fsdp = get_fsdp  # noqa: F405


def get_fsdp(module, compute_dtype=None):
    if compute_dtype is not None:
        module = module.to(compute_dtype)  # the mistake: the masters become low precision too
    return _get_fsdp(module, compute_dtype)
