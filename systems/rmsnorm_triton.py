"""Fused Triton kernels for RMSNorm, their launchers and the custom ops torch.compile sees.

The math is in :mod:`systems.rmsnorm` (whose ``RMSNormAutogradTriton`` is the autograd Function that
calls the ops here). The input is viewed as a contiguous ``(rows, H)`` matrix. Three kernels:

- Forward, one program per row: load the whole row (``BLOCK_SIZE`` = next power of two >= H, the tail
  masked off so any H works), accumulate the mean of squares in fp32, write ``y`` in x's dtype and the
  row's reciprocal rms ``r`` (fp32) for backward. One read of x, one write of y.
- Backward ``dx``, one program per row: it holds the whole row, so the dot product
  ``sum_k dy_k g_k x_k`` is a register reduction, then ``dx`` is written. Many small programs keep
  every SM full (a row block per program would cap the grid and hold an fp32 ``dg`` accumulator per
  program in registers, the design this replaced: 147-151 registers at H = 2048-4096, spills from 8192).
- Backward ``dg``, one program per (column block, row chunk): it sums ``dy * x * r`` down its rows
  into a small ``(BLOCK_ROWS, BLOCK_COLS)`` fp32 tile and writes one partial row of ``dg``; torch sums
  the few partial rows (``(chunks, H)``, deterministic, no atomics). This reads x and dy a second
  time -- two extra passes that the per-row ``dx`` kernel pays for in occupancy.

Launch settings: the number of warps grows with the row length so each thread holds at most 8-16
elements per tensor (no register spills up to H = 16384; ``tests/systems/test_triton_resources.py``
compiles every setting for sm_90 and checks). All launches go through
:func:`systems.triton_launch.launch` (device checks, ``torch.cuda.device`` guard).

The launchers are registered as ``torch.library.custom_op``s (``systems::rmsnorm_forward``,
``systems::rmsnorm_backward``) with a fake (shape-only) implementation: ``torch.compile`` keeps them
as single opaque nodes of its graph instead of breaking the graph or tracing into Triton's launcher.
(``torch.library.triton_op`` would let Inductor see inside, but its shape-only tracing runs the
kernel body, which the Triton interpreter cannot do on shape-only tensors; a custom op works the same
on a GPU and in the CPU tests.)

Importing this module needs triton; running it needs CUDA tensors, or ``TRITON_INTERPRET=1`` set before
triton is imported (then CPU tensors go through the Triton interpreter: correct but very slow).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from systems.triton_launch import launch

__all__ = ["rmsnorm_forward", "rmsnorm_backward", "row_settings", "DG_SETTINGS", "MAX_HIDDEN"]

MAX_HIDDEN = 65536  # one row must fit in one program's registers


@triton.jit
def _rmsnorm_forward_kernel(
    x_ptr,
    g_ptr,
    y_ptr,
    rstd_ptr,
    H,
    eps,
    BLOCK_SIZE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # int64: rows * H can exceed 2**31 elements
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < H  # hidden sizes that are not powers of two: the tail is masked off
    x = tl.load(x_ptr + row * H + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    # Masked lanes hold 0, so they add nothing to the sum of squares; divide by the true H.
    r = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / H + eps)  # r = 1 / rms(x): one scalar per row
    tl.store(rstd_ptr + row, r)  # saved for backward: 4 bytes per row instead of recomputing
    y = x * r * g  # y = x / rms(x) * g, in fp32, stored in the input dtype
    tl.store(y_ptr + row * H + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rmsnorm_backward_dx_kernel(
    dy_ptr,
    x_ptr,
    g_ptr,
    rstd_ptr,
    dx_ptr,
    H,
    BLOCK_SIZE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_SIZE)
    mask = cols < H
    x = tl.load(x_ptr + row * H + cols, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + row * H + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    r = tl.load(rstd_ptr + row)  # the forward's 1 / rms(x)
    dy_g = dy * g
    dot = tl.sum(dy_g * x, axis=0)  # sum_k dy_k g_k x_k
    # dx_j = r g_j dy_j - x_j r^3 / H * sum_k dy_k g_k x_k  (r depends on every x_k of the row)
    dx = r * dy_g - x * (r * r * r) * (dot / H)
    tl.store(dx_ptr + row * H + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rmsnorm_backward_dg_kernel(
    dy_ptr,
    x_ptr,
    rstd_ptr,
    dg_partial_ptr,
    n_rows,
    H,
    rows_per_chunk,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_COLS: tl.constexpr,
):
    # dg_j = sum over rows of dy_ij x_ij r_i: a column sum. Program (col_block, chunk) sums one
    # column block over one chunk of rows; the launcher adds the chunks' partial sums.
    col_block = tl.program_id(0)
    chunk = tl.program_id(1).to(tl.int64)
    cols = col_block * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    col_ok = cols < H
    acc = tl.zeros((BLOCK_ROWS, BLOCK_COLS), dtype=tl.float32)  # summed over rows at the end
    row_start = chunk * rows_per_chunk
    row_end = tl.minimum(row_start + rows_per_chunk, n_rows)
    for first in range(row_start, row_end, BLOCK_ROWS):
        rows = first + tl.arange(0, BLOCK_ROWS)
        row_ok = rows < row_end
        offsets = rows[:, None] * H + cols[None, :]  # (BLOCK_ROWS, BLOCK_COLS)
        mask = row_ok[:, None] & col_ok[None, :]
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        r = tl.load(rstd_ptr + rows, mask=row_ok, other=0.0)
        acc += dy * x * r[:, None]  # element-wise; rows are summed once, after the loop
    tl.store(dg_partial_ptr + chunk * H + cols, tl.sum(acc, axis=0), mask=col_ok)


def row_settings(H: int) -> dict:
    """BLOCK_SIZE and num_warps of the one-program-per-row kernels (forward and dx) for hidden size H."""
    if H > MAX_HIDDEN:
        raise ValueError(f"rmsnorm_triton: hidden size {H} is larger than the supported {MAX_HIDDEN}")
    block_size = triton.next_power_of_2(H)
    # At most 8 (fp32) elements per thread per tensor up to 4096, 16 beyond: 4 warps = 128 threads
    # cover 1024, 8 warps 2048-4096, 16 warps 8192-16384, 32 warps (1024 threads, the maximum) above.
    num_warps = 4 if block_size <= 1024 else 8 if block_size <= 4096 else 16 if block_size <= 16384 else 32
    return dict(BLOCK_SIZE=block_size, num_warps=num_warps)


# The dg reduction: tiles of 32 rows x 128 columns, 4 warps (32 fp32 elements per thread per tensor).
DG_SETTINGS = dict(BLOCK_ROWS=32, BLOCK_COLS=128, num_warps=4)


def _row_chunks(rows: int, H: int, device: torch.device) -> int:
    """How many row chunks the dg reduction splits the rows into."""
    if device.type not in ("cuda", "meta"):
        return 1 if rows <= 256 else 2  # the interpreter runs programs one by one: few, long programs
    col_blocks = triton.cdiv(H, DG_SETTINGS["BLOCK_COLS"])
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 132
    # About 4 programs per SM in all, each with at least a few tiles of rows to amortise its start.
    wanted = triton.cdiv(4 * sms, col_blocks)
    return max(1, min(wanted, triton.cdiv(rows, 4 * DG_SETTINGS["BLOCK_ROWS"])))


def _forward(x: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """``x`` contiguous (rows, H), ``g`` (H,) -> (y (rows, H) in x's dtype, r (rows,) fp32)."""
    x, g = x.contiguous(), g.contiguous()
    rows, H = x.shape
    y = torch.empty_like(x)
    rstd = torch.empty(rows, device=x.device, dtype=torch.float32)
    launch(_rmsnorm_forward_kernel, (rows,), x, g, y, rstd, H, eps, **row_settings(H))
    return y, rstd


def _backward(dy: Tensor, x: Tensor, g: Tensor, rstd: Tensor) -> tuple[Tensor, Tensor]:
    """``dy``, ``x`` contiguous (rows, H), ``g`` (H,), ``rstd`` (rows,) -> (dx like x, dg like g)."""
    dy, x, g, rstd = dy.contiguous(), x.contiguous(), g.contiguous(), rstd.contiguous()
    rows, H = x.shape
    dx = torch.empty_like(x)
    launch(_rmsnorm_backward_dx_kernel, (rows,), dy, x, g, rstd, dx, H, **row_settings(H))
    chunks = _row_chunks(rows, H, x.device)
    rows_per_chunk = triton.cdiv(rows, chunks)
    chunks = triton.cdiv(rows, rows_per_chunk)  # recount: rounding up may leave fewer, none empty
    dg_partial = torch.empty(chunks, H, device=x.device, dtype=torch.float32)  # (chunks, H)
    grid = (triton.cdiv(H, DG_SETTINGS["BLOCK_COLS"]), chunks)
    launch(_rmsnorm_backward_dg_kernel, grid, dy, x, rstd, dg_partial, rows, H, rows_per_chunk, **DG_SETTINGS)
    return dx, dg_partial.sum(dim=0).to(g.dtype)  # (chunks, H) -> (H,): a small second reduction


@torch.library.custom_op("systems::rmsnorm_forward", mutates_args=())
def rmsnorm_forward(x: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Custom op around the forward launcher: (y, r) for contiguous x (rows, H) and g (H,)."""
    return _forward(x, g, eps)


@rmsnorm_forward.register_fake
def _(x: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), x.new_empty(x.shape[0], dtype=torch.float32)


@torch.library.custom_op("systems::rmsnorm_backward", mutates_args=())
def rmsnorm_backward(dy: Tensor, x: Tensor, g: Tensor, rstd: Tensor) -> tuple[Tensor, Tensor]:
    """Custom op around the backward launchers: (dx, dg)."""
    return _backward(dy, x, g, rstd)


@rmsnorm_backward.register_fake
def _(dy: Tensor, x: Tensor, g: Tensor, rstd: Tensor) -> tuple[Tensor, Tensor]:
    return torch.empty_like(x), torch.empty_like(g)
