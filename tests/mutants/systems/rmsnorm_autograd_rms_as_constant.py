"""The RMSNorm autograd Function's backward treats the RMS as a constant: dx = dy * g / rms, missing
the term through the mean of squares."""

from __future__ import annotations

import torch

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_kernels.py::test_rmsnorm_autograd_function",
]


class _RMSConstant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        ctx.save_for_backward(x, g, rms)
        return x / rms * g

    @staticmethod
    def backward(ctx, dy):
        x, g, rms = ctx.saved_tensors
        dg = (dy * x / rms).reshape(-1, x.shape[-1]).sum(0)
        return dy * g / rms, dg  # the mistake: no -x * mean(dy * g * x) / rms^3 term


def get_rmsnorm_autograd_function_pytorch():
    return _RMSConstant
