"""FlashAttention's backward forgets the 1/sqrt(d) factor in dQ and dK."""

from __future__ import annotations

import math

import torch

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_kernels.py::test_flash_pytorch",
]


_get = get_flashattention_autograd_function_pytorch  # noqa: F405


def get_flashattention_autograd_function_pytorch():
    inner = _get()

    class Unscaled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, is_causal=False):
            with torch.enable_grad():
                q_, k_, v_ = (t.detach().requires_grad_() for t in (q, k, v))
                out = inner.apply(q_, k_, v_, is_causal)
            ctx.save_for_backward(q_, k_, v_, out, out.grad_fn.saved_tensors[-1])
            ctx.scale = math.sqrt(q.shape[-1])
            return out.detach()

        @staticmethod
        def backward(ctx, grad_out):
            q_, k_, v_, out, _ = ctx.saved_tensors
            dq, dk, dv = torch.autograd.grad(out, (q_, k_, v_), grad_out)
            return dq * ctx.scale, dk * ctx.scale, dv, None  # the mistake: dS not scaled by 1/sqrt(d)

    return Unscaled
