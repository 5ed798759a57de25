"""Adapters for the systems graders: the only door from tests/systems to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/systems --adapters systems=student_pkg.adapters`.
"""

from __future__ import annotations


# ---- rmsnorm and flash attention kernels (issue 4) ----
def get_rmsnorm_autograd_function_pytorch() -> type:
    """The RMSNorm torch.autograd.Function with a hand-written PyTorch backward: ``.apply(x, g)``."""
    from systems.rmsnorm import RMSNormAutogradPyTorch

    return RMSNormAutogradPyTorch


def get_rmsnorm_autograd_function_triton() -> type:
    """The RMSNorm torch.autograd.Function with Triton forward and backward kernels: ``.apply(x, g)``."""
    from systems.rmsnorm import RMSNormAutogradTriton

    return RMSNormAutogradTriton


def rmsnorm_backward_g_pytorch(grad_output, x, g):
    """dL/dg of RMSNorm (eps 1e-5), summed over every leading dim: shape (H,)."""
    from systems.rmsnorm import rmsnorm_backward_g

    return rmsnorm_backward_g(grad_output, x, g)


def rmsnorm_backward_x_pytorch(grad_output, x, g):
    """dL/dx of RMSNorm (eps 1e-5): the shape of x."""
    from systems.rmsnorm import rmsnorm_backward_x

    return rmsnorm_backward_x(grad_output, x, g)


def get_flashattention_autograd_function_pytorch() -> type:
    """FlashAttention-2 tiled in plain PyTorch: ``.apply(q, k, v, is_causal)``; saves q, k, v, O, L."""
    from systems.flash_attention import FlashAttentionPyTorch

    return FlashAttentionPyTorch


def get_flashattention_autograd_function_triton() -> type:
    """FlashAttention-2 with Triton forward and backward kernels: ``.apply(q, k, v, is_causal)``."""
    from systems.flash_attention import FlashAttentionTriton

    return FlashAttentionTriton


# (end of section: rmsnorm and flash attention kernels)


# ---- distributed: ddp and sharded optimizer (issue 4) ----
# (end of section: distributed: ddp and sharded optimizer)
