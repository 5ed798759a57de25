"""Fused Triton kernels for RMSNorm and the launchers that call them.

The math is in :mod:`systems.rmsnorm` (whose ``RMSNormAutogradTriton`` is the autograd Function that
calls these launchers). Layout: the input is viewed as a ``(rows, H)`` matrix.

- Forward: one program per row. It loads the whole row (``BLOCK_SIZE`` = next power of two >= H, the
  tail masked off so any H works), accumulates the mean of squares in fp32, writes ``y`` in x's dtype
  and the row's reciprocal rms ``r`` (fp32) for backward. One read of x, one write of y: the kernel is
  memory bound, and its speed is judged in GB/s against the card's bandwidth.
- Backward: each program owns a contiguous block of rows. Per row it writes ``dx`` (the formula needs a
  dot product over the row, which the program holds entirely), and it adds ``dy * x * r`` into an fp32
  accumulator of length H kept in registers. At the end each program writes its partial ``dg``: a
  ``(programs, H)`` buffer with a few hundred rows instead of a full ``(rows, H)`` temporary, summed
  by torch afterwards.

Importing this module needs triton; running it needs a CUDA tensor, or ``TRITON_INTERPRET=1`` set before
triton is imported (then CPU tensors go through the Triton interpreter: correct but very slow).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["rmsnorm_forward_triton", "rmsnorm_backward_triton"]

MAX_BLOCK_SIZE = 65536  # one row must fit in one program's registers / shared memory


@triton.jit
def _rmsnorm_forward_kernel(
    x_ptr,
    g_ptr,
    y_ptr,
    rstd_ptr,
    x_row_stride,
    y_row_stride,
    H,
    eps,
    BLOCK_SIZE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # int64: rows * H can exceed 2**31 elements
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < H  # hidden sizes that are not powers of two: the tail is masked off
    x = tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    # Masked lanes hold 0, so they add nothing to the sum of squares; divide by the true H.
    r = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / H + eps)
    tl.store(rstd_ptr + row, r)
    y = x * r * g
    tl.store(y_ptr + row * y_row_stride + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rmsnorm_backward_kernel(
    dy_ptr,
    x_ptr,
    g_ptr,
    rstd_ptr,
    dx_ptr,
    dg_partial_ptr,
    n_rows,
    H,
    rows_per_program,
    BLOCK_SIZE: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)  # int64 so row offsets below cannot overflow
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < H
    g = tl.load(g_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dg_acc = tl.zeros((BLOCK_SIZE,), dtype=tl.float32)  # this program's share of dL/dg
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    for row in range(row_start, row_end):
        offsets = row * H + cols  # x, dy and dx are contiguous (rows, H)
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        r = tl.load(rstd_ptr + row)
        dy_g = dy * g
        dot = tl.sum(dy_g * x, axis=0)  # sum_k dy_k g_k x_k
        dx = r * dy_g - x * (r * r * r) * (dot / H)
        tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dg_acc += dy * x * r
    tl.store(dg_partial_ptr + pid * H + cols, dg_acc, mask=mask)


def _block_size_and_warps(H: int) -> tuple[int, int]:
    block_size = triton.next_power_of_2(H)
    if block_size > MAX_BLOCK_SIZE:
        raise ValueError(f"rmsnorm_triton: hidden size {H} is larger than the supported {MAX_BLOCK_SIZE}")
    # More warps for longer rows so each thread holds a bounded number of elements.
    num_warps = 4 if block_size < 2048 else 8 if block_size < 8192 else 16 if block_size < 32768 else 32
    return block_size, num_warps


def _check_tensors(kernel, *tensors: Tensor) -> None:
    """Same device for all; CPU tensors only when triton runs its interpreter (TRITON_INTERPRET=1)."""
    from triton.runtime.interpreter import InterpretedFunction

    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"rmsnorm_triton: tensors are on different devices {sorted(map(str, devices))}")
    if not tensors[0].is_cuda and not isinstance(kernel, InterpretedFunction):
        raise ValueError(
            f"rmsnorm_triton: got {tensors[0].device} tensors; the kernels need CUDA tensors, or "
            "TRITON_INTERPRET=1 set before triton is imported to run them on the CPU"
        )


def rmsnorm_forward_triton(x: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``x`` contiguous (rows, H), ``g`` (H,) -> (y (rows, H) in x's dtype, r (rows,) fp32)."""
    _check_tensors(_rmsnorm_forward_kernel, x, g)
    rows, H = x.shape
    block_size, num_warps = _block_size_and_warps(H)
    y = torch.empty_like(x)
    rstd = torch.empty(rows, device=x.device, dtype=torch.float32)
    _rmsnorm_forward_kernel[(rows,)](
        x, g, y, rstd, x.stride(0), y.stride(0), H, eps, BLOCK_SIZE=block_size, num_warps=num_warps
    )
    return y, rstd


def _num_backward_programs(rows: int, device: torch.device) -> int:
    if device.type == "cuda":
        # A few programs per SM keep the GPU busy; more would only grow the partial-dg buffer.
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = 4  # the interpreter runs programs one after another: few programs, long loops
    return max(1, min(rows, target))


def rmsnorm_backward_triton(dy: Tensor, x: Tensor, g: Tensor, rstd: Tensor) -> tuple[Tensor, Tensor]:
    """``dy``, ``x`` contiguous (rows, H), ``g`` (H,), ``rstd`` (rows,) -> (dx like x, dg like g)."""
    _check_tensors(_rmsnorm_backward_kernel, dy, x, g, rstd)
    rows, H = x.shape
    block_size, num_warps = _block_size_and_warps(H)
    programs = _num_backward_programs(rows, x.device)
    rows_per_program = triton.cdiv(rows, programs)
    programs = triton.cdiv(rows, rows_per_program)
    dx = torch.empty_like(x)
    dg_partial = torch.empty(programs, H, device=x.device, dtype=torch.float32)  # (programs, H)
    _rmsnorm_backward_kernel[(programs,)](
        dy, x, g, rstd, dx, dg_partial, rows, H, rows_per_program, BLOCK_SIZE=block_size, num_warps=num_warps
    )
    return dx, dg_partial.sum(dim=0).to(g.dtype)
