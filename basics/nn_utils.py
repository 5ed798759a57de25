"""Loss and gradient helpers for training: cross-entropy and global gradient-norm clipping.

Course handout (CS336 assignment 1), sections "Cross-entropy loss" and "Gradient clipping".

Cross-entropy of one position with logits ``o`` and target ``t`` is

    l = -log softmax(o)[t] = logsumexp(o) - o[t],     logsumexp(o) = m + log sum_j exp(o_j - m)

with ``m = max_j o_j`` subtracted first, so no ``exp`` ever sees a large positive number (the loss
stays finite for logits of size 1000 where a naive ``exp`` overflows). The loss is averaged over every
batch dimension. It is computed in fp32 whatever the logits' dtype: bf16 has 8 bits of mantissa, too
few to sum a 50K-entry vocabulary of exponentials accurately.

Gradient clipping treats all gradients as one long vector: if its L2 norm exceeds ``max_l2_norm`` every
gradient is scaled by ``max_l2_norm / (norm + 1e-6)`` (the 1e-6 is the handout's, for stability), the
same rule as ``torch.nn.utils.clip_grad_norm_``. It is written without a Python ``if`` on the norm:

    g <- g * min(1, max_l2_norm / (norm + 1e-6))

multiplies by exactly 1 below the limit, and asking ``norm > max_l2_norm`` in Python would make the
host wait for the GPU every step (and break a ``torch.compile`` graph). Only a norm within 1e-6 of
the limit is scaled where the ``if`` version would not be, by a factor within 1e-6 of 1.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["cross_entropy", "clip_gradients"]

CLIP_EPS = 1e-6


def cross_entropy(logits: Float[Tensor, "... vocab"], targets: Int[Tensor, "..."]) -> Float[Tensor, ""]:
    """Mean cross-entropy of ``targets`` under ``logits``, over all leading (batch) dimensions.

    >>> cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))   # -log(1/2)
    tensor(0.6931)
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"cross_entropy: logits batch shape {tuple(logits.shape[:-1])} does not match "
            f"targets shape {tuple(targets.shape)}"
        )
    # fp32 for the reduction over the vocabulary (see the module docstring).
    logits = logits.float()
    m = logits.amax(dim=-1, keepdim=True)  # (..., 1)
    logsumexp = (logits - m).exp().sum(dim=-1).log() + m.squeeze(-1)  # (...)
    target_logit = logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)  # (...)
    return (logsumexp - target_logit).mean()


@torch.no_grad()
def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_l2_norm: float) -> Tensor:
    """Scale gradients in place so their global L2 norm is at most ``max_l2_norm``.

    Parameters whose ``.grad`` is None are skipped. Returns the norm before clipping (a 0-dim fp32
    tensor), which training loops log.
    """
    if max_l2_norm <= 0:
        raise ValueError(f"clip_gradients: max_l2_norm must be positive, got {max_l2_norm}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # ||g|| = sqrt(sum over tensors of ||g_i||^2): one fp32 norm per tensor (torch._foreach_norm does
    # them all in one multi-tensor launch per dtype), then the norm of those norms. One device assumed,
    # as in single-GPU training.
    norms = [
        n for group in _by_dtype(grads).values() for n in torch._foreach_norm(group, 2, dtype=torch.float32)
    ]
    total = torch.linalg.vector_norm(torch.stack(norms))  # 0-dim, fp32, still on the device
    scale = (max_l2_norm / (total + CLIP_EPS)).clamp(max=1.0)  # 1 when within the limit: no branch
    for dtype, group in _by_dtype(grads).items():
        torch._foreach_mul_(group, scale.to(dtype))  # every gradient of this dtype, in place
    return total


def _by_dtype(tensors: list[Tensor]) -> dict[torch.dtype, list[Tensor]]:
    """Multi-tensor (``_foreach``) kernels take lists of one dtype: group by it, keeping the order."""
    groups: dict[torch.dtype, list[Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.dtype, []).append(t)
    return groups
