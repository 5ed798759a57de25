"""Triton kernels for FlashAttention-2 and the launchers that call them.

The algorithm and its math are in :mod:`systems.flash_attention` (whose ``FlashAttentionTriton`` is the
autograd Function calling these launchers). All tensors are viewed as ``(batch, seq, d)`` with the
last dim contiguous; ``batch`` is every leading dim (batch x heads) flattened.

- Forward: grid (query tiles, batch). A program loads its ``Q_TILE x d`` queries once, walks the key
  tiles with the online softmax, accumulating in fp32, then writes O (input dtype) and L (fp32).
- Backward, two kernels so that no two programs write the same output (no atomics):
  ``_flash_backward_dkdv_kernel`` with grid (key tiles, batch) loops over query tiles and owns dK, dV;
  ``_flash_backward_dq_kernel`` with grid (query tiles, batch) loops over key tiles and owns dQ.
  Both recompute P = exp(S - L) per tile. D = rowsum(O * dO) is one torch reduction beforehand.
- Causal: the key loop of a query tile stops at the diagonal (later tiles are fully masked), the query
  loop of a key tile starts at the diagonal; the tile on the diagonal is masked element by element.
- Sequence lengths need not be multiples of the tiles, nor d a power of two: loads are masked, padded
  key columns get a score of -inf, padded query rows are never stored.

Matmul inputs stay in the input dtype (bf16 tensor cores on a GPU) while scores, softmax statistics and
accumulators are fp32. For fp32 inputs the dots use full fp32 precision unless torch's own matmul is
allowed tf32 (``torch.backends.cuda.matmul.allow_tf32``).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["flash_forward_triton", "flash_backward_triton"]


@triton.jit
def _flash_forward_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    lse_ptr,
    stride_qb,
    stride_qn,
    stride_kb,
    stride_kn,
    stride_vb,
    stride_vn,
    stride_ob,
    stride_on,
    n_queries,
    n_keys,
    d,
    scale,
    IS_CAUSAL: tl.constexpr,
    Q_TILE: tl.constexpr,
    K_TILE: tl.constexpr,
    D_BLOCK: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
):
    q_tile = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    rows = q_tile * Q_TILE + tl.arange(0, Q_TILE)  # query indices of this tile
    cols = tl.arange(0, D_BLOCK)
    row_ok = rows < n_queries
    col_ok = cols < d
    q = tl.load(
        q_ptr + batch * stride_qb + rows[:, None] * stride_qn + cols[None, :],
        mask=row_ok[:, None] & col_ok[None, :],
        other=0.0,
    )
    m = tl.full((Q_TILE,), float("-inf"), dtype=tl.float32)  # running row max
    denom = tl.zeros((Q_TILE,), dtype=tl.float32)  # running denominator
    acc = tl.zeros((Q_TILE, D_BLOCK), dtype=tl.float32)  # unnormalised output
    k_stop = n_keys
    if IS_CAUSAL:  # key tiles past this tile's last query are fully masked: skip them
        k_stop = tl.minimum(n_keys, (q_tile + 1) * Q_TILE)
    for k_start in range(0, k_stop, K_TILE):
        keys = k_start + tl.arange(0, K_TILE)
        key_ok = keys < n_keys
        kv_mask = key_ok[:, None] & col_ok[None, :]
        k = tl.load(
            k_ptr + batch * stride_kb + keys[:, None] * stride_kn + cols[None, :], mask=kv_mask, other=0.0
        )
        v = tl.load(
            v_ptr + batch * stride_vb + keys[:, None] * stride_vn + cols[None, :], mask=kv_mask, other=0.0
        )
        s = tl.dot(q.to(DOT_DTYPE), tl.trans(k.to(DOT_DTYPE)), input_precision=DOT_PRECISION) * scale  # fp32
        visible = key_ok[None, :]
        if IS_CAUSAL:
            visible = visible & (keys[None, :] <= rows[:, None])
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        p = tl.exp(s - m_new[:, None])
        rescale = tl.exp(m - m_new)  # 0 on the first tile (m = -inf)
        denom = rescale * denom + tl.sum(p, axis=1)
        pv = tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE), input_precision=DOT_PRECISION)  # P cast like V
        acc = acc * rescale[:, None] + pv
        m = m_new
    out = acc / denom[:, None]
    tl.store(
        o_ptr + batch * stride_ob + rows[:, None] * stride_on + cols[None, :],
        out.to(o_ptr.dtype.element_ty),
        mask=row_ok[:, None] & col_ok[None, :],
    )
    tl.store(lse_ptr + batch * n_queries + rows, m + tl.log(denom), mask=row_ok)


@triton.jit
def _flash_backward_dkdv_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    do_ptr,
    lse_ptr,
    delta_ptr,
    dk_ptr,
    dv_ptr,
    stride_qb,
    stride_kb,
    n_queries,
    n_keys,
    d,
    scale,
    IS_CAUSAL: tl.constexpr,
    Q_TILE: tl.constexpr,
    K_TILE: tl.constexpr,
    D_BLOCK: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
):
    # q, do are contiguous (batch, Nq, d) (row stride d); k, v, dk, dv contiguous (batch, Nk, d).
    k_tile = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    keys = k_tile * K_TILE + tl.arange(0, K_TILE)
    cols = tl.arange(0, D_BLOCK)
    key_ok = keys < n_keys
    col_ok = cols < d
    kv_offsets = batch * stride_kb + keys[:, None] * d + cols[None, :]
    kv_mask = key_ok[:, None] & col_ok[None, :]
    k = tl.load(k_ptr + kv_offsets, mask=kv_mask, other=0.0)
    v = tl.load(v_ptr + kv_offsets, mask=kv_mask, other=0.0)
    dk = tl.zeros((K_TILE, D_BLOCK), dtype=tl.float32)
    dv = tl.zeros((K_TILE, D_BLOCK), dtype=tl.float32)
    q_start_first = 0
    if IS_CAUSAL:  # query tiles that end before this key tile's first key never see it
        q_start_first = ((k_tile * K_TILE) // Q_TILE) * Q_TILE
    for q_start in range(q_start_first, n_queries, Q_TILE):
        rows = q_start + tl.arange(0, Q_TILE)
        row_ok = rows < n_queries
        q_offsets = batch * stride_qb + rows[:, None] * d + cols[None, :]
        q_mask = row_ok[:, None] & col_ok[None, :]
        q = tl.load(q_ptr + q_offsets, mask=q_mask, other=0.0)
        do = tl.load(do_ptr + q_offsets, mask=q_mask, other=0.0)
        lse = tl.load(lse_ptr + batch * n_queries + rows, mask=row_ok, other=0.0)
        delta = tl.load(delta_ptr + batch * n_queries + rows, mask=row_ok, other=0.0)
        s = tl.dot(q.to(DOT_DTYPE), tl.trans(k.to(DOT_DTYPE)), input_precision=DOT_PRECISION) * scale
        visible = row_ok[:, None] & key_ok[None, :]
        if IS_CAUSAL:
            visible = visible & (keys[None, :] <= rows[:, None])
        p = tl.where(visible, tl.exp(s - lse[:, None]), 0.0)  # recomputed probabilities
        dv += tl.dot(tl.trans(p.to(DOT_DTYPE)), do.to(DOT_DTYPE), input_precision=DOT_PRECISION)
        dp = tl.dot(do.to(DOT_DTYPE), tl.trans(v.to(DOT_DTYPE)), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds.to(DOT_DTYPE)), q.to(DOT_DTYPE), input_precision=DOT_PRECISION)
    tl.store(dk_ptr + kv_offsets, (dk * scale).to(dk_ptr.dtype.element_ty), mask=kv_mask)
    tl.store(dv_ptr + kv_offsets, dv.to(dv_ptr.dtype.element_ty), mask=kv_mask)


@triton.jit
def _flash_backward_dq_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    do_ptr,
    lse_ptr,
    delta_ptr,
    dq_ptr,
    stride_qb,
    stride_kb,
    n_queries,
    n_keys,
    d,
    scale,
    IS_CAUSAL: tl.constexpr,
    Q_TILE: tl.constexpr,
    K_TILE: tl.constexpr,
    D_BLOCK: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
):
    q_tile = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    rows = q_tile * Q_TILE + tl.arange(0, Q_TILE)
    cols = tl.arange(0, D_BLOCK)
    row_ok = rows < n_queries
    col_ok = cols < d
    q_offsets = batch * stride_qb + rows[:, None] * d + cols[None, :]
    q_mask = row_ok[:, None] & col_ok[None, :]
    q = tl.load(q_ptr + q_offsets, mask=q_mask, other=0.0)
    do = tl.load(do_ptr + q_offsets, mask=q_mask, other=0.0)
    lse = tl.load(lse_ptr + batch * n_queries + rows, mask=row_ok, other=0.0)
    delta = tl.load(delta_ptr + batch * n_queries + rows, mask=row_ok, other=0.0)
    dq = tl.zeros((Q_TILE, D_BLOCK), dtype=tl.float32)
    k_stop = n_keys
    if IS_CAUSAL:
        k_stop = tl.minimum(n_keys, (q_tile + 1) * Q_TILE)
    for k_start in range(0, k_stop, K_TILE):
        keys = k_start + tl.arange(0, K_TILE)
        key_ok = keys < n_keys
        kv_offsets = batch * stride_kb + keys[:, None] * d + cols[None, :]
        kv_mask = key_ok[:, None] & col_ok[None, :]
        k = tl.load(k_ptr + kv_offsets, mask=kv_mask, other=0.0)
        v = tl.load(v_ptr + kv_offsets, mask=kv_mask, other=0.0)
        s = tl.dot(q.to(DOT_DTYPE), tl.trans(k.to(DOT_DTYPE)), input_precision=DOT_PRECISION) * scale
        visible = row_ok[:, None] & key_ok[None, :]
        if IS_CAUSAL:
            visible = visible & (keys[None, :] <= rows[:, None])
        p = tl.where(visible, tl.exp(s - lse[:, None]), 0.0)
        dp = tl.dot(do.to(DOT_DTYPE), tl.trans(v.to(DOT_DTYPE)), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(DOT_DTYPE), k.to(DOT_DTYPE), input_precision=DOT_PRECISION)
    tl.store(dq_ptr + q_offsets, (dq * scale).to(dq_ptr.dtype.element_ty), mask=q_mask)


_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _launch_settings(q: Tensor) -> dict:
    """Tile sizes and dot precision for this input: small tiles under the interpreter (fast, and a
    short test sequence spans several tiles), GPU-sized tiles on CUDA."""
    d = q.shape[-1]
    d_block = max(16, triton.next_power_of_2(d))  # tl.dot needs every dimension >= 16
    if q.is_cuda:
        # 64 x 64 tiles; halve the key tile for wide fp32 heads so the tiles fit in shared memory.
        k_tile = 32 if (q.element_size() == 4 and d_block > 64) else 64
        tiles = dict(Q_TILE=64, K_TILE=k_tile, num_warps=4 if d_block <= 64 else 8, num_stages=2)
        if q.dtype not in _TL_DTYPES:
            raise ValueError(f"flash_attention_triton: unsupported dtype {q.dtype}; use fp32, bf16 or fp16")
        dot_dtype = _TL_DTYPES[q.dtype]
        # input_precision matters for fp32 operands only; 16-bit ones use the tensor cores as they are.
        precision = (
            ("tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee")
            if q.dtype == torch.float32
            else None
        )
    else:
        tiles = dict(Q_TILE=16, K_TILE=16)
        precision = "ieee"
        # The interpreter's tl.dot multiplies bf16 as raw 16-bit integers (triton 3.x), so on the CPU
        # every matmul operand is upcast to fp32; on a GPU operands stay in the input dtype.
        dot_dtype = tl.float32
    return dict(D_BLOCK=d_block, DOT_PRECISION=precision, DOT_DTYPE=dot_dtype, **tiles)


def _check_tensors(kernel, *tensors: Tensor) -> None:
    """Same device for all; CPU tensors only when triton runs its interpreter (TRITON_INTERPRET=1)."""
    from triton.runtime.interpreter import InterpretedFunction

    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(
            f"flash_attention_triton: tensors are on different devices {sorted(map(str, devices))}"
        )
    if not tensors[0].is_cuda and not isinstance(kernel, InterpretedFunction):
        raise ValueError(
            f"flash_attention_triton: got {tensors[0].device} tensors; the kernels need CUDA tensors, or "
            "TRITON_INTERPRET=1 set before triton is imported to run them on the CPU"
        )


def flash_forward_triton(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> tuple[Tensor, Tensor]:
    """q (batch, Nq, d), k, v (batch, Nk, d) -> (O like q, L (batch, Nq) fp32)."""
    _check_tensors(_flash_forward_kernel, q, k, v)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    batch, n_queries, d = q.shape
    n_keys = k.shape[1]
    settings = _launch_settings(q)
    out = torch.empty_like(q)
    lse = torch.empty(batch, n_queries, device=q.device, dtype=torch.float32)
    grid = (triton.cdiv(n_queries, settings["Q_TILE"]), batch)
    _flash_forward_kernel[grid](
        q, k, v, out, lse,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        n_queries, n_keys, d, 1.0 / math.sqrt(d),
        IS_CAUSAL=is_causal, **settings,
    )  # fmt: skip
    return out, lse


def flash_backward_triton(
    q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor, is_causal: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward kernels: returns (dq, dk, dv) like (q, k, v)."""
    _check_tensors(_flash_backward_dq_kernel, q, k, v, out, lse, grad_out)
    q, k, v, grad_out = q.contiguous(), k.contiguous(), v.contiguous(), grad_out.contiguous()
    lse = lse.contiguous()
    batch, n_queries, d = q.shape
    n_keys = k.shape[1]
    settings = _launch_settings(q)
    delta = (out.float() * grad_out.float()).sum(dim=-1).contiguous()  # D = rowsum(O * dO): (batch, Nq)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    scale = 1.0 / math.sqrt(d)
    common = (n_queries, n_keys, d, scale)
    _flash_backward_dkdv_kernel[(triton.cdiv(n_keys, settings["K_TILE"]), batch)](
        q,
        k,
        v,
        grad_out,
        lse,
        delta,
        dk,
        dv,
        q.stride(0),
        k.stride(0),
        *common,
        IS_CAUSAL=is_causal,
        **settings,
    )
    _flash_backward_dq_kernel[(triton.cdiv(n_queries, settings["Q_TILE"]), batch)](
        q, k, v, grad_out, lse, delta, dq, q.stride(0), k.stride(0), *common, IS_CAUSAL=is_causal, **settings
    )
    return dq, dk, dv
