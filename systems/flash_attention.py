"""FlashAttention-2: attention tiled so the (seq x seq) score matrix is never stored.

Dao (2023), "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning",
Algorithms 1 (forward) and 2 (backward); course handout (CS336 assignment 2), section "FlashAttention-2".

Attention for one (batch, head) with queries Q (Nq x d), keys K and values V (Nk x d)::

    S = Q K^T / sqrt(d)          P = softmax(S) row by row          O = P V

Forward, tiled. Split Q into tiles of ``q_tile`` rows and K, V into tiles of ``k_tile`` rows. For one
query tile keep, per row, the running max ``m``, the running denominator ``l`` (``denom`` in the code)
and an unnormalised output ``acc``; for each key tile j (the "online softmax")::

    S_j   = Q_i K_j^T / sqrt(d)
    m_new = max(m, rowmax(S_j))
    P_j   = exp(S_j - m_new)                   # entries <= 1: no overflow
    l     = exp(m - m_new) * l + rowsum(P_j)   # rescale what was summed under the old max
    acc   = exp(m - m_new) * acc + P_j V_j
    m     = m_new

and at the end ``O_i = acc / l`` and the log-sum-exp ``L_i = m + log(l)`` (= log sum_j exp(S_ij)).
Only Q, K, V, O and L are saved for backward: memory O(N d), not O(N^2).

Backward, given dO. With D = rowsum(O * dO) (one number per query row), recompute each tile's
probabilities from L instead of storing them::

    P   = exp(S - L)           dV = P^T dO          dP = dO V^T
    dS  = P * (dP - D)         dQ = dS K / sqrt(d)  dK = dS^T Q / sqrt(d)

(D_i = sum_j P_ij dP_ij, the term that the softmax Jacobian subtracts, computed cheaply from O and dO.)

Causal masking (query i attends keys j <= i, aligned at the top-left as in
``F.scaled_dot_product_attention(is_causal=True)``) sets S_ij = -inf above the diagonal and skips key
tiles that lie entirely above it (they would contribute exp(-inf) = 0 anyway): about half the work.

Here: :func:`attention_reference` (the plain O(N^2) oracle), :func:`flash_forward_pytorch` and
:func:`flash_backward_pytorch` (the algorithm above in torch, the version to read), and two
``torch.autograd.Function``s called as ``.apply(q, k, v, is_causal)``: :class:`FlashAttentionPyTorch`
and :class:`FlashAttentionTriton` (kernels in :mod:`systems.flash_attention_triton`). Inputs are
``(..., seq, d)``: leading (batch, head) dims are flattened into one batch axis. Arithmetic is fp32
whatever the input dtype; O comes back in the input dtype and L in fp32.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = [
    "attention_reference",
    "flash_forward_pytorch",
    "flash_backward_pytorch",
    "FlashAttentionPyTorch",
    "FlashAttentionTriton",
]

Q_TILE = 16  # tile sizes of the PyTorch version (small, so a short test sequence spans several tiles)
K_TILE = 16


def _check(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() < 2 or k.shape != v.shape or q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            "flash attention: expected q (..., Nq, d) and k, v (..., Nk, d) with the same leading dims "
            f"and d; got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-2] == 0 or k.shape[-2] == 0:
        raise ValueError("flash attention: empty sequence")


def attention_reference(
    q: Float[Tensor, "... Nq d"],
    k: Float[Tensor, "... Nk d"],
    v: Float[Tensor, "... Nk d"],
    is_causal: bool = False,
) -> tuple[Float[Tensor, "... Nq d"], Float[Tensor, "... Nq"]]:
    """Plain attention, the whole score matrix at once: returns (O, L) with L = logsumexp of the scores."""
    _check(q, k, v)
    scores = q.float() @ k.float().transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Nq, Nk)
    if is_causal:
        above = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(above, float("-inf"))  # key j > query i: no weight
    lse = torch.logsumexp(scores, dim=-1)  # (..., Nq)
    # softmax(S) = exp(S - L): the same L the tiled versions save for backward.
    out = torch.exp(scores - lse.unsqueeze(-1)) @ v.float()  # (..., Nq, Nk) @ (..., Nk, d) -> (..., Nq, d)
    return out.to(q.dtype), lse


def _causal_mask(q_start: int, q_end: int, k_start: int, k_end: int, device) -> Tensor:
    """True where query index < key index (to be masked out), for one (query tile, key tile) pair."""
    rows = torch.arange(q_start, q_end, device=device)[:, None]
    cols = torch.arange(k_start, k_end, device=device)[None, :]
    return cols > rows  # (q_tile, k_tile)


def flash_forward_pytorch(
    q: Float[Tensor, "batch Nq d"],
    k: Float[Tensor, "batch Nk d"],
    v: Float[Tensor, "batch Nk d"],
    is_causal: bool = False,
    q_tile: int = Q_TILE,
    k_tile: int = K_TILE,
) -> tuple[Float[Tensor, "batch Nq d"], Float[Tensor, "batch Nq"]]:
    """The tiled forward with an online softmax (module docstring). Returns (O in q's dtype, L fp32)."""
    batch, n_queries, d = q.shape
    n_keys = k.shape[1]
    scale = 1.0 / math.sqrt(d)
    out = torch.empty(q.shape, device=q.device, dtype=q.dtype)
    lse = torch.empty(batch, n_queries, device=q.device, dtype=torch.float32)
    for q_start in range(0, n_queries, q_tile):
        q_end = min(q_start + q_tile, n_queries)
        q_i = q[:, q_start:q_end].float()  # (batch, tq, d)
        m = torch.full((batch, q_end - q_start), float("-inf"), device=q.device)  # running max
        denom = torch.zeros(batch, q_end - q_start, device=q.device)  # running denominator
        acc = torch.zeros(batch, q_end - q_start, d, device=q.device)  # unnormalised output
        # Causal: key tiles starting after this tile's last query are fully masked -- skip them.
        k_stop = min(n_keys, q_end) if is_causal else n_keys
        for k_start in range(0, k_stop, k_tile):
            k_end = min(k_start + k_tile, n_keys)
            s = q_i @ k[:, k_start:k_end].float().transpose(1, 2) * scale  # (batch, tq, tk)
            if is_causal and k_end - 1 > q_start:  # the tile crosses the diagonal
                s = s.masked_fill(_causal_mask(q_start, q_end, k_start, k_end, q.device), float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1))  # (batch, tq): m_new = max(m, rowmax(S_j))
            p = torch.exp(s - m_new.unsqueeze(-1))  # (batch, tq, tk): P_j = exp(S_j - m_new) <= 1
            rescale = torch.exp(m - m_new)  # exp(-inf) = 0 on the first tile
            # What was summed under the old max m is worth exp(m - m_new) as much under the new one.
            denom = rescale * denom + p.sum(dim=-1)  # l = exp(m - m_new) l + rowsum(P_j)
            acc = rescale.unsqueeze(-1) * acc + p @ v[:, k_start:k_end].float()  # (batch, tq, d)
            m = m_new
        # Normalise once at the end, not per tile: O_i = acc / l; L_i = m + log l = logsumexp(S_i).
        out[:, q_start:q_end] = (acc / denom.unsqueeze(-1)).to(q.dtype)
        lse[:, q_start:q_end] = m + torch.log(denom)
    return out, lse


def flash_backward_pytorch(
    q: Float[Tensor, "batch Nq d"],
    k: Float[Tensor, "batch Nk d"],
    v: Float[Tensor, "batch Nk d"],
    out: Float[Tensor, "batch Nq d"],
    lse: Float[Tensor, "batch Nq"],
    grad_out: Float[Tensor, "batch Nq d"],
    is_causal: bool = False,
    q_tile: int = Q_TILE,
    k_tile: int = K_TILE,
) -> tuple[Tensor, Tensor, Tensor]:
    """The tiled backward: recompute P from L, tile by tile (module docstring). Returns (dq, dk, dv)."""
    batch, n_queries, d = q.shape
    n_keys = k.shape[1]
    scale = 1.0 / math.sqrt(d)
    delta = (out.float() * grad_out.float()).sum(dim=-1)  # D = rowsum(O * dO): (batch, Nq)
    dq = torch.zeros(q.shape, device=q.device, dtype=torch.float32)
    dk = torch.zeros(k.shape, device=q.device, dtype=torch.float32)
    dv = torch.zeros(v.shape, device=q.device, dtype=torch.float32)
    # Outer loop over key tiles (each owns its dK, dV), inner over the query tiles that see it.
    for k_start in range(0, n_keys, k_tile):
        k_end = min(k_start + k_tile, n_keys)
        k_j, v_j = k[:, k_start:k_end].float(), v[:, k_start:k_end].float()  # (batch, tk, d)
        # Causal: query tiles ending before this key tile's first key never see it -- skip them.
        q_first = (k_start // q_tile) * q_tile if is_causal else 0
        for q_start in range(q_first, n_queries, q_tile):
            q_end = min(q_start + q_tile, n_queries)
            q_i, do_i = q[:, q_start:q_end].float(), grad_out[:, q_start:q_end].float()
            s = q_i @ k_j.transpose(1, 2) * scale  # (batch, tq, tk)
            if is_causal and k_end - 1 > q_start:
                s = s.masked_fill(_causal_mask(q_start, q_end, k_start, k_end, q.device), float("-inf"))
            # P = exp(S - L) exactly, since L is the row's full logsumexp (masked entries: exp(-inf) = 0).
            p = torch.exp(s - lse[:, q_start:q_end].unsqueeze(-1))  # (batch, tq, tk)
            dv[:, k_start:k_end] += p.transpose(1, 2) @ do_i  # dV_j += P^T dO_i: (batch, tk, d)
            dp = do_i @ v_j.transpose(1, 2)  # dP = dO_i V_j^T: (batch, tq, tk)
            # Softmax backward per row: dS = P * (dP - D) with D = rowsum(P * dP) = rowsum(O * dO).
            ds = p * (dp - delta[:, q_start:q_end].unsqueeze(-1))  # (batch, tq, tk)
            dq[:, q_start:q_end] += ds @ k_j * scale  # dQ_i += dS K_j / sqrt(d): (batch, tq, d)
            dk[:, k_start:k_end] += ds.transpose(1, 2) @ q_i * scale  # dK_j += dS^T Q_i / sqrt(d)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def _flatten(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(..., N, d) -> (batch, N, d): every leading dim (batch, heads) becomes one batch axis."""
    return q.reshape(-1, *q.shape[-2:]), k.reshape(-1, *k.shape[-2:]), v.reshape(-1, *v.shape[-2:])


def _forward(ctx, forward_fn, q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> Tensor:
    """Both Functions' forward: run ``forward_fn`` on (batch, N, d) views, save what backward needs."""
    _check(q, k, v)
    out, lse = forward_fn(*_flatten(q, k, v), is_causal)
    out, lse = out.reshape(q.shape), lse.reshape(q.shape[:-1])  # (..., Nq, d) and (..., Nq) again
    ctx.save_for_backward(q, k, v, out, lse)  # O(N d) memory: L replaces the (Nq, Nk) probabilities
    ctx.is_causal = is_causal
    return out


def _backward(ctx, backward_fn, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
    """Both Functions' backward: ``backward_fn`` on (batch, N, d) views, gradients in the inputs' shapes."""
    q, k, v, out, lse = ctx.saved_tensors
    q3, k3, v3 = _flatten(q, k, v)
    dq, dk, dv = backward_fn(
        q3,
        k3,
        v3,
        out.reshape(q3.shape),
        lse.reshape(q3.shape[:-1]),
        grad_out.reshape(q3.shape),
        ctx.is_causal,
    )
    return dq.view(q.shape), dk.view(k.shape), dv.view(v.shape), None  # no gradient for is_causal


class FlashAttentionPyTorch(torch.autograd.Function):
    """FlashAttention-2 in plain PyTorch. ``.apply(q, k, v, is_causal=False)``; saves q, k, v, O, L."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> Tensor:
        return _forward(ctx, flash_forward_pytorch, q, k, v, is_causal)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        return _backward(ctx, flash_backward_pytorch, grad_out)


class FlashAttentionTriton(torch.autograd.Function):
    """FlashAttention-2 with Triton kernels. ``.apply(q, k, v, is_causal=False)``; saves q, k, v, O, L.

    Runs on CUDA tensors, or on CPU tensors under ``TRITON_INTERPRET=1`` (slow; that is how the tests
    run without a GPU).
    """

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> Tensor:
        from systems import flash_attention_triton  # lazy: triton is optional (registers the ops)

        return _forward(ctx, flash_attention_triton.flash_forward, q, k, v, is_causal)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        from systems import flash_attention_triton

        return _backward(ctx, flash_attention_triton.flash_backward, grad_out)
