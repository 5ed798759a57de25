"""RMSNorm with a hand-written backward: a PyTorch reference and a fused Triton kernel.

Course handout (CS336 assignment 2), section "Triton kernels: RMSNorm". Zhang & Sennrich (2019),
"Root Mean Square Layer Normalization".

Forward, for one row ``x`` of length ``H`` with learnable gain ``g`` (shape ``(H,)``)::

    r = 1 / sqrt(mean_k(x_k^2) + eps)          # one scalar per row, the "reciprocal rms"
    y_i = x_i * r * g_i

Backward, given ``dy = dL/dy`` for the row (``sum`` runs over the H hidden units)::

    dL/dg_i = sum over every row of  dy_i * x_i * r
    dL/dx_i = r * g_i * dy_i  -  x_i * r^3 / H * sum_k(dy_k * g_k * x_k)

(the second term comes from r depending on every x_k: dr/dx_i = -x_i * r^3 / H).

Three ways to compute it live here, so a student can read them side by side:

- :func:`rmsnorm_reference` -- three lines of torch, differentiated by autograd (the grader's oracle);
- :class:`RMSNormAutogradPyTorch` -- a ``torch.autograd.Function`` whose backward is the formulas above,
  written in torch (:func:`rmsnorm_backward_x`, :func:`rmsnorm_backward_g`);
- :class:`RMSNormAutogradTriton` -- the same Function with fused Triton kernels (in
  :mod:`systems.rmsnorm_triton`: one program per row for y and for dx, a column-block reduction
  for dg).

All three take ``x`` of any leading shape ``(..., H)``, compute in fp32 whatever the input dtype
(the mean of squares of 4096 bf16 numbers loses most of its digits otherwise), and return ``y`` in
``x``'s dtype. Simplification: ``eps`` is fixed per call (default 1e-5, the course model's value).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = [
    "EPS",
    "rmsnorm_reference",
    "rmsnorm_backward_x",
    "rmsnorm_backward_g",
    "RMSNormAutogradPyTorch",
    "RMSNormAutogradTriton",
    "TritonRMSNorm",
]

EPS = 1e-5


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)  # at least fp32; fp64 stays fp64 (gradcheck)


def _check(x: Tensor, g: Tensor) -> None:
    if g.dim() != 1 or x.dim() < 1 or x.shape[-1] != g.shape[0]:
        raise ValueError(f"rmsnorm: x {tuple(x.shape)} must end in the gain's size {tuple(g.shape)}")


def _rms_reciprocal(x32: Tensor, eps: float) -> Tensor:
    return torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)  # (..., 1)


def rmsnorm_reference(
    x: Float[Tensor, "... H"], g: Float[Tensor, " H"], eps: float = EPS
) -> Float[Tensor, "... H"]:
    """Plain RMSNorm, differentiated by autograd: the oracle every other version is compared with.

    >>> rmsnorm_reference(torch.tensor([[3.0, 4.0]]), torch.ones(2))  # r = 1/sqrt((9 + 16) / 2)
    tensor([[0.8485, 1.1314]])
    """
    _check(x, g)
    dtype = _compute_dtype(x)  # fp32 for the mean of squares (see the module docstring)
    x32 = x.to(dtype)
    return (x32 * _rms_reciprocal(x32, eps) * g.to(dtype)).to(x.dtype)


def rmsnorm_backward_g(
    grad_output: Float[Tensor, "... H"], x: Float[Tensor, "... H"], g: Float[Tensor, " H"], eps: float = EPS
) -> Float[Tensor, " H"]:
    """dL/dg = sum over all rows of dy * x * r, shape (H,), in g's dtype."""
    _check(x, g)
    dtype = _compute_dtype(x)
    x32, dy32 = x.to(dtype), grad_output.to(dtype)
    grad_g = (dy32 * x32 * _rms_reciprocal(x32, eps)).reshape(-1, x.shape[-1]).sum(dim=0)  # (H,)
    return grad_g.to(g.dtype)


def rmsnorm_backward_x(
    grad_output: Float[Tensor, "... H"], x: Float[Tensor, "... H"], g: Float[Tensor, " H"], eps: float = EPS
) -> Float[Tensor, "... H"]:
    """dL/dx = r * g * dy - x * r^3 / H * sum_k(dy_k g_k x_k), in x's dtype."""
    _check(x, g)
    dtype = _compute_dtype(x)
    x32, dy32, g32 = x.to(dtype), grad_output.to(dtype), g.to(dtype)
    r = _rms_reciprocal(x32, eps)  # (..., 1)
    dy_g = dy32 * g32  # (..., H)
    dot = (dy_g * x32).sum(dim=-1, keepdim=True)  # (..., 1)
    grad_x = r * dy_g - x32 * r.pow(3) * dot / x.shape[-1]
    return grad_x.to(x.dtype)


class RMSNormAutogradPyTorch(torch.autograd.Function):
    """RMSNorm whose backward is the hand-derived formulas in torch. ``.apply(x, g[, eps])``."""

    @staticmethod
    def forward(ctx, x: Tensor, g: Tensor, eps: float = EPS) -> Tensor:
        _check(x, g)
        ctx.save_for_backward(x, g)
        ctx.eps = eps
        return rmsnorm_reference(x, g, eps)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, Tensor, None]:
        x, g = ctx.saved_tensors
        grad_x = rmsnorm_backward_x(grad_output, x, g, ctx.eps)
        grad_g = rmsnorm_backward_g(grad_output, x, g, ctx.eps)
        return grad_x, grad_g, None


class RMSNormAutogradTriton(torch.autograd.Function):
    """RMSNorm with fused Triton kernels. ``.apply(x, g[, eps])`` for x of shape (..., H).

    Forward saves x, g and the per-row reciprocal rms r (fp32, one number per row), so backward does
    not recompute the mean of squares. The kernels are called through the custom ops
    ``systems::rmsnorm_forward`` / ``systems::rmsnorm_backward`` (:mod:`systems.rmsnorm_triton`), which
    ``torch.compile`` keeps in its graph without a break. Runs on CUDA tensors, or on CPU tensors under
    ``TRITON_INTERPRET=1`` (slowly; that is how the tests run it without a GPU).
    """

    @staticmethod
    def forward(ctx, x: Tensor, g: Tensor, eps: float = EPS) -> Tensor:
        from systems import rmsnorm_triton  # lazy: triton is an optional extra (registers the ops)

        _check(x, g)
        x2d = x.reshape(-1, x.shape[-1]).contiguous()  # (rows, H): one kernel program per row
        y2d, rstd = rmsnorm_triton.rmsnorm_forward(x2d, g.contiguous(), eps)
        ctx.save_for_backward(x2d, g, rstd)
        ctx.x_shape = x.shape
        return y2d.view(x.shape)  # (rows, H) -> (..., H)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, Tensor, None]:
        from systems import rmsnorm_triton

        x2d, g, rstd = ctx.saved_tensors
        dy2d = grad_output.reshape(x2d.shape).contiguous()  # (rows, H), rows as in the forward
        grad_x, grad_g = rmsnorm_triton.rmsnorm_backward(dy2d, x2d, g.contiguous(), rstd)
        return grad_x.view(ctx.x_shape), grad_g, None  # (rows, H) -> (..., H); no gradient for eps


class TritonRMSNorm(torch.nn.Module):
    """Drop-in RMSNorm layer (gain initialised to ones) backed by :class:`RMSNormAutogradTriton`."""

    def __init__(self, d_model: int, eps: float = EPS, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        return RMSNormAutogradTriton.apply(x, self.weight, self.eps)
