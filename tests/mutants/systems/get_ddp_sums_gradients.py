"""The 2026 DDP (``get_ddp`` / ``ddp_on_after_backward``) sums the gradients over ranks instead of
averaging them."""

from __future__ import annotations

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_fsdp.py::test_get_ddp_matches_single_process_training",
]


_after = ddp_on_after_backward  # noqa: F405


def ddp_on_after_backward(ddp_model, optimizer):
    _after(ddp_model, optimizer)
    for p in ddp_model.module.parameters():
        if p.grad is not None:
            p.grad.mul_(2)  # the mistake: divides by nothing (2 ranks)
