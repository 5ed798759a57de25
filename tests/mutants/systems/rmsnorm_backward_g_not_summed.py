"""The RMSNorm gain gradient is taken from the first row only, not summed over rows."""

from __future__ import annotations

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_kernels.py::test_rmsnorm_backward_pytorch",
]


_backward_g = rmsnorm_backward_g_pytorch  # noqa: F405


def rmsnorm_backward_g_pytorch(grad_output, x, g):
    rows = x.reshape(-1, x.shape[-1])
    return _backward_g(grad_output.reshape(-1, x.shape[-1])[:1], rows[:1], g)
