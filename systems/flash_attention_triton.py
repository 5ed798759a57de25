"""Triton kernels for FlashAttention-2, their launchers and the custom ops torch.compile sees.

The algorithm and its math are in :mod:`systems.flash_attention` (whose ``FlashAttentionTriton`` is the
autograd Function calling the ops here). All tensors are viewed as contiguous ``(batch, seq, d)``;
``batch`` is every leading dim (batch x heads) flattened.

- Forward: grid (query tiles, batch). A program loads its ``Q_TILE x d`` queries once, walks the key
  tiles with the online softmax, accumulating in fp32, then writes O (input dtype) and L (fp32).
- Backward, two kernels so that no two programs write the same output (no atomics):
  ``_flash_backward_dkdv_kernel`` with grid (key tiles, batch) loops over query tiles and owns dK, dV;
  ``_flash_backward_dq_kernel`` with grid (query tiles, batch) loops over key tiles and owns dQ.
  Both recompute P = exp(S - L) per tile. D = rowsum(O * dO) is one torch reduction beforehand.
  The dK/dV kernel works with transposed tiles (S^T = K Q^T), so the products it accumulates,
  dV = P^T dO and dK = dS^T Q, need no transpose of an fp32 tile -- that and per-head-dim tiles
  brought it from 255 registers + 312 B spilled per thread (bf16, d = 64) to 139 and no spill.
- Causal: the key loop of a query tile stops at the diagonal (later tiles are fully masked), the query
  loop of a key tile starts at the diagonal; the tile on the diagonal is masked element by element.
- Sequence lengths need not be multiples of the tiles, nor d a power of two: loads are masked, padded
  key columns get a score of -inf, padded query rows are never stored.

Tiles and warps: per kernel, head-dim block and precision, from :data:`GPU_TILES` -- every entry
compiles for an H100 without register spills (``tests/systems/test_triton_resources.py`` checks them
ahead of time, on the CPU). Under the Triton interpreter the tiles are 16 and 32 (INTERPRETER_TILES).

Precision: matmul inputs stay in the input dtype (bf16 tensor cores on a GPU) while scores, softmax
statistics and accumulators are fp32. fp32 inputs follow torch's own matmul setting
(:func:`fp32_dot_precision`): three-pass ``tf32x3`` dots (about fp32 accuracy) by default, one-pass
``tf32`` after ``torch.set_float32_matmul_precision("high")``; never the FMA-based ``ieee`` dots,
which spill kilobytes of registers per thread. fp32 heads are supported up to d = 128, 16-bit ones
up to 256.

The launchers are registered as ``torch.library.custom_op``s (``systems::flash_attention_forward``,
``systems::flash_attention_backward``) with fake (shape-only) implementations, so ``torch.compile``
keeps each as one node of its graph (see :mod:`systems.rmsnorm_triton` for why not ``triton_op``).
All launches go through :func:`systems.triton_launch.launch` (device checks, ``torch.cuda.device``).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from systems.triton_launch import launch, runs_natively

__all__ = ["flash_forward", "flash_backward", "launch_settings", "fp32_dot_precision", "GPU_TILES"]


@triton.jit
def _flash_forward_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    o_ptr,
    lse_ptr,
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
    # q, o are contiguous (batch, Nq, d) (row stride d); k, v contiguous (batch, Nk, d).
    q_tile = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    rows = q_tile * Q_TILE + tl.arange(0, Q_TILE)  # query indices of this tile
    cols = tl.arange(0, D_BLOCK)  # head-dim lanes; D_BLOCK is d rounded up to a power of two
    row_ok = rows < n_queries  # the last tile may hang past the sequence
    col_ok = cols < d
    q_offsets = batch * stride_qb + rows[:, None] * d + cols[None, :]  # (Q_TILE, D_BLOCK) element offsets
    q_mask = row_ok[:, None] & col_ok[None, :]  # padding loads 0: adds nothing to any dot product
    q = tl.load(q_ptr + q_offsets, mask=q_mask, other=0.0).to(DOT_DTYPE)  # (Q_TILE, D_BLOCK)
    m = tl.full((Q_TILE,), float("-inf"), dtype=tl.float32)  # running row max
    denom = tl.zeros((Q_TILE,), dtype=tl.float32)  # running denominator
    acc = tl.zeros((Q_TILE, D_BLOCK), dtype=tl.float32)  # unnormalised output
    k_stop = n_keys
    if IS_CAUSAL:  # key tiles past this tile's last query are fully masked: skip them
        k_stop = tl.minimum(n_keys, (q_tile + 1) * Q_TILE)
    for k_start in range(0, k_stop, K_TILE):
        keys = k_start + tl.arange(0, K_TILE)
        key_ok = keys < n_keys
        kv_offsets = batch * stride_kb + keys[:, None] * d + cols[None, :]
        kv_mask = key_ok[:, None] & col_ok[None, :]
        k = tl.load(k_ptr + kv_offsets, mask=kv_mask, other=0.0).to(DOT_DTYPE)  # (K_TILE, D_BLOCK)
        v = tl.load(v_ptr + kv_offsets, mask=kv_mask, other=0.0).to(DOT_DTYPE)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale  # (Q_TILE, K_TILE) fp32
        visible = key_ok[None, :]  # padded keys must get no weight: score -inf
        if IS_CAUSAL:
            visible = visible & (keys[None, :] <= rows[:, None])  # key j <= query i
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))  # m_new = max(m, rowmax(S_j)); finite: key 0 <= row
        p = tl.exp(s - m_new[:, None])  # P_j = exp(S_j - m_new), entries <= 1
        rescale = tl.exp(m - m_new)  # 0 on the first tile (m = -inf)
        denom = rescale * denom + tl.sum(p, axis=1)  # l = exp(m - m_new) l + rowsum(P_j)
        pv = tl.dot(p.to(DOT_DTYPE), v, input_precision=DOT_PRECISION)  # P cast like V
        acc = acc * rescale[:, None] + pv  # acc = exp(m - m_new) acc + P_j V_j
        m = m_new
    out = acc / denom[:, None]  # O_i = acc / l: one division per row, after the last tile
    tl.store(o_ptr + q_offsets, out.to(o_ptr.dtype.element_ty), mask=q_mask)
    tl.store(lse_ptr + batch * n_queries + rows, m + tl.log(denom), mask=row_ok)  # L = m + log l


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
    # Transposed tiles (S^T = K Q^T, keys x queries): P^T and dS^T come out of the dots ready for
    # dV = P^T dO and dK = dS^T Q, so only 16-bit Q and dO tiles are ever transposed (module docstring).
    k_tile = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    keys = k_tile * K_TILE + tl.arange(0, K_TILE)
    cols = tl.arange(0, D_BLOCK)
    key_ok = keys < n_keys
    col_ok = cols < d
    kv_offsets = batch * stride_kb + keys[:, None] * d + cols[None, :]
    kv_mask = key_ok[:, None] & col_ok[None, :]
    k = tl.load(k_ptr + kv_offsets, mask=kv_mask, other=0.0).to(DOT_DTYPE)  # (K_TILE, D_BLOCK)
    v = tl.load(v_ptr + kv_offsets, mask=kv_mask, other=0.0).to(DOT_DTYPE)
    dk = tl.zeros((K_TILE, D_BLOCK), dtype=tl.float32)  # this program owns dK, dV of its key tile
    dv = tl.zeros((K_TILE, D_BLOCK), dtype=tl.float32)
    q_start_first = 0
    if IS_CAUSAL:  # query tiles that end before this key tile's first key never see it
        q_start_first = ((k_tile * K_TILE) // Q_TILE) * Q_TILE  # first key rounded down to a Q_TILE
    for q_start in range(q_start_first, n_queries, Q_TILE):
        rows = q_start + tl.arange(0, Q_TILE)
        row_ok = rows < n_queries
        q_offsets = batch * stride_qb + rows[:, None] * d + cols[None, :]
        q_mask = row_ok[:, None] & col_ok[None, :]
        q = tl.load(q_ptr + q_offsets, mask=q_mask, other=0.0).to(DOT_DTYPE)  # (Q_TILE, D_BLOCK)
        do = tl.load(do_ptr + q_offsets, mask=q_mask, other=0.0).to(DOT_DTYPE)
        lse = tl.load(lse_ptr + batch * n_queries + rows, mask=row_ok, other=0.0)  # L, (Q_TILE,)
        delta = tl.load(delta_ptr + batch * n_queries + rows, mask=row_ok, other=0.0)  # D = rowsum(O dO)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * scale  # S^T: (K_TILE, Q_TILE) fp32
        visible = key_ok[:, None] & row_ok[None, :]  # padded rows too: their L, D are fake zeros
        if IS_CAUSAL:
            visible = visible & (keys[:, None] <= rows[None, :])
        p_t = tl.where(visible, tl.exp(s_t - lse[None, :]), 0.0)  # recomputed probabilities, P^T
        dv += tl.dot(p_t.to(DOT_DTYPE), do, input_precision=DOT_PRECISION)  # dV += P^T dO
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # dP^T = V dO^T
        ds_t = p_t * (dp_t - delta[None, :])  # dS^T = P^T * (dP^T - D)
        dk += tl.dot(ds_t.to(DOT_DTYPE), q, input_precision=DOT_PRECISION)  # dK += dS^T Q, unscaled
    # 1/sqrt(d) factored out of the loop: applied once to the sum instead of to every tile.
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
    q = tl.load(q_ptr + q_offsets, mask=q_mask, other=0.0).to(DOT_DTYPE)  # (Q_TILE, D_BLOCK)
    do = tl.load(do_ptr + q_offsets, mask=q_mask, other=0.0).to(DOT_DTYPE)
    lse = tl.load(lse_ptr + batch * n_queries + rows, mask=row_ok, other=0.0)
    delta = tl.load(delta_ptr + batch * n_queries + rows, mask=row_ok, other=0.0)
    dq = tl.zeros((Q_TILE, D_BLOCK), dtype=tl.float32)  # this program owns dQ of its query tile
    k_stop = n_keys
    if IS_CAUSAL:  # as in the forward: key tiles past the diagonal are fully masked
        k_stop = tl.minimum(n_keys, (q_tile + 1) * Q_TILE)
    for k_start in range(0, k_stop, K_TILE):
        keys = k_start + tl.arange(0, K_TILE)
        key_ok = keys < n_keys
        kv_offsets = batch * stride_kb + keys[:, None] * d + cols[None, :]
        kv_mask = key_ok[:, None] & col_ok[None, :]
        k = tl.load(k_ptr + kv_offsets, mask=kv_mask, other=0.0).to(DOT_DTYPE)  # (K_TILE, D_BLOCK)
        v = tl.load(v_ptr + kv_offsets, mask=kv_mask, other=0.0).to(DOT_DTYPE)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale  # (Q_TILE, K_TILE) fp32
        visible = row_ok[:, None] & key_ok[None, :]
        if IS_CAUSAL:
            visible = visible & (keys[None, :] <= rows[:, None])
        p = tl.where(visible, tl.exp(s - lse[:, None]), 0.0)  # P = exp(S - L), recomputed
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # dP = dO V^T: (Q_TILE, K_TILE)
        ds = p * (dp - delta[:, None])  # dS = P * (dP - D)
        dq += tl.dot(ds.to(DOT_DTYPE), k, input_precision=DOT_PRECISION)  # dQ += dS K, unscaled
    tl.store(dq_ptr + q_offsets, (dq * scale).to(dq_ptr.dtype.element_ty), mask=q_mask)


_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}

# GPU launch settings (Q_TILE, K_TILE, num_warps, num_stages) per kernel, head-dim block and dot
# precision: "16bit" for bf16/fp16 inputs, "tf32" / "tf32x3" for fp32 inputs (see fp32_dot_precision).
# Chosen so that every entry compiles for sm_90 without register spills and leaves some headroom
# below 255 registers per thread (tests/systems/test_triton_resources.py compiles all of them ahead
# of time on the CPU). The backward tiles are transposed relative to the forward's: dK/dV programs
# own a tall key tile and stream short query tiles, dQ programs the other way round. tf32x3 does three
# tensor-core products per dot and needs the most registers, hence its small tiles.
GPU_TILES: dict[str, dict[tuple[int, str], tuple[int, int, int, int]]] = {
    "forward": {
        (16, "16bit"): (128, 64, 4, 2), (32, "16bit"): (128, 64, 4, 2), (64, "16bit"): (128, 64, 8, 2),
        (128, "16bit"): (128, 64, 8, 2), (256, "16bit"): (64, 32, 8, 2),
        (16, "tf32"): (64, 32, 4, 2), (32, "tf32"): (64, 32, 4, 2), (64, "tf32"): (64, 32, 4, 2),
        (128, "tf32"): (64, 32, 8, 2),
        (16, "tf32x3"): (64, 32, 4, 2), (32, "tf32x3"): (64, 32, 4, 2), (64, "tf32x3"): (32, 32, 8, 2),
        (128, "tf32x3"): (16, 32, 4, 2),
    },
    "dkdv": {
        (16, "16bit"): (32, 128, 4, 2), (32, "16bit"): (32, 128, 4, 2), (64, "16bit"): (32, 128, 8, 2),
        (128, "16bit"): (32, 64, 8, 2), (256, "16bit"): (16, 32, 8, 2),
        (16, "tf32"): (32, 64, 4, 2), (32, "tf32"): (32, 64, 4, 2), (64, "tf32"): (32, 64, 4, 2),
        (128, "tf32"): (32, 32, 8, 2),
        (16, "tf32x3"): (32, 64, 4, 2), (32, "tf32x3"): (16, 64, 4, 2), (64, "tf32x3"): (16, 32, 8, 2),
        (128, "tf32x3"): (16, 16, 8, 2),
    },
    "dq": {
        (16, "16bit"): (128, 32, 4, 2), (32, "16bit"): (128, 32, 4, 2), (64, "16bit"): (128, 32, 8, 2),
        (128, "16bit"): (128, 32, 8, 2), (256, "16bit"): (32, 32, 8, 2),
        (16, "tf32"): (64, 32, 4, 2), (32, "tf32"): (64, 32, 4, 2), (64, "tf32"): (64, 32, 4, 2),
        (128, "tf32"): (32, 32, 8, 2),
        (16, "tf32x3"): (64, 32, 4, 2), (32, "tf32x3"): (64, 32, 4, 2), (64, "tf32x3"): (32, 32, 8, 2),
        (128, "tf32x3"): (16, 16, 8, 2),
    },
}  # fmt: skip
MAX_HEAD_DIM = {"16bit": 256, "tf32": 128, "tf32x3": 128}
# Under the interpreter: small tiles (a short test sequence spans several), shaped like the GPU's --
# the forward and dQ kernels with taller query tiles, dK/dV with taller key tiles -- so the CPU tests
# also cover query and key tiles of different sizes.
INTERPRETER_TILES = {"forward": (32, 16), "dkdv": (16, 32), "dq": (32, 16)}


def launch_settings(kernel: str, q: Tensor) -> dict:
    """Constexprs and launch options of ``kernel`` (forward | dkdv | dq) for inputs like ``q``."""
    d_block = max(16, triton.next_power_of_2(q.shape[-1]))  # tl.dot needs every dimension >= 16
    if q.dtype not in _TL_DTYPES:
        raise ValueError(f"flash_attention_triton: unsupported dtype {q.dtype}; use fp32, bf16 or fp16")
    if not runs_natively(q):
        # The interpreter's tl.dot multiplies bf16 as raw 16-bit integers (triton 3.x), so on the CPU
        # every matmul operand is upcast to fp32 and multiplied exactly; on a GPU they keep their dtype.
        q_tile, k_tile = INTERPRETER_TILES[kernel]
        return dict(Q_TILE=q_tile, K_TILE=k_tile, D_BLOCK=d_block, DOT_PRECISION="ieee", DOT_DTYPE=tl.float32)
    kind = fp32_dot_precision() if q.dtype == torch.float32 else "16bit"
    if d_block > MAX_HEAD_DIM[kind]:
        raise ValueError(
            f"flash_attention_triton: head dim {q.shape[-1]} is larger than the supported {MAX_HEAD_DIM[kind]} "
            f"for {q.dtype} inputs on a GPU"
        )
    q_tile, k_tile, num_warps, num_stages = GPU_TILES[kernel][d_block, kind]
    return dict(
        Q_TILE=q_tile,
        K_TILE=k_tile,
        D_BLOCK=d_block,
        DOT_PRECISION=None if kind == "16bit" else kind,
        DOT_DTYPE=_TL_DTYPES[q.dtype],
        num_warps=num_warps,
        num_stages=num_stages,
    )


def fp32_dot_precision() -> str:
    """How fp32 inputs are multiplied on a GPU: "tf32" (one tensor-core pass, ~1e-3 relative error)
    when torch itself allows it (``torch.set_float32_matmul_precision("high")``), else "tf32x3" (three
    tf32 passes, about fp32 accuracy). Never "ieee": fp32 FMA dots spill kilobytes of registers."""
    return "tf32x3" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _forward(q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> tuple[Tensor, Tensor]:
    """q (batch, Nq, d), k, v (batch, Nk, d) -> (O like q, L (batch, Nq) fp32)."""
    # Contiguous: the kernels compute offsets as batch * stride + row * d + col.
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    batch, n_queries, d = q.shape
    n_keys = k.shape[1]
    settings = launch_settings("forward", q)
    out = torch.empty_like(q)
    lse = torch.empty(batch, n_queries, device=q.device, dtype=torch.float32)
    grid = (triton.cdiv(n_queries, settings["Q_TILE"]), batch)  # one program per (query tile, batch)
    launch(
        _flash_forward_kernel, grid,
        q, k, v, out, lse, q.stride(0), k.stride(0), n_queries, n_keys, d, 1.0 / math.sqrt(d),
        IS_CAUSAL=is_causal, **settings,
    )  # fmt: skip
    return out, lse


def _backward(
    q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor, is_causal: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward kernels: returns (dq, dk, dv) like (q, k, v)."""
    q, k, v, grad_out, lse = (
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        grad_out.contiguous(),
        lse.contiguous(),
    )
    batch, n_queries, d = q.shape
    n_keys = k.shape[1]
    delta = (out.float() * grad_out.float()).sum(dim=-1).contiguous()  # D = rowsum(O * dO): (batch, Nq)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    common = (q.stride(0), k.stride(0), n_queries, n_keys, d, 1.0 / math.sqrt(d))
    # Two launches so no two programs write the same output: key tiles own dK, dV; query tiles own dQ.
    settings = launch_settings("dkdv", q)
    launch(
        _flash_backward_dkdv_kernel, (triton.cdiv(n_keys, settings["K_TILE"]), batch),
        q, k, v, grad_out, lse, delta, dk, dv, *common, IS_CAUSAL=is_causal, **settings,
    )  # fmt: skip
    settings = launch_settings("dq", q)
    launch(
        _flash_backward_dq_kernel, (triton.cdiv(n_queries, settings["Q_TILE"]), batch),
        q, k, v, grad_out, lse, delta, dq, *common, IS_CAUSAL=is_causal, **settings,
    )  # fmt: skip
    return dq, dk, dv


@torch.library.custom_op("systems::flash_attention_forward", mutates_args=())
def flash_forward(q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> tuple[Tensor, Tensor]:
    """Custom op around the forward launcher: (O, L) for q (batch, Nq, d), k, v (batch, Nk, d)."""
    return _forward(q, k, v, is_causal)


@flash_forward.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> tuple[Tensor, Tensor]:
    return torch.empty_like(q), q.new_empty(q.shape[:-1], dtype=torch.float32)


@torch.library.custom_op("systems::flash_attention_backward", mutates_args=())
def flash_backward(
    q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, grad_out: Tensor, is_causal: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Custom op around the backward launchers: (dq, dk, dv)."""
    return _backward(q, k, v, out, lse, grad_out, is_causal)


@flash_backward.register_fake
def _(q, k, v, out, lse, grad_out, is_causal):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
