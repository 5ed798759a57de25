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
same rule as ``torch.nn.utils.clip_grad_norm_``.
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
    # Sum of squares in fp32 on the gradients' device (one device assumed, as in single-GPU training).
    total = torch.stack([g.detach().float().pow(2).sum() for g in grads]).sum().sqrt()
    if total > max_l2_norm:
        scale = max_l2_norm / (total + CLIP_EPS)
        for g in grads:
            g.mul_(scale.to(g.dtype))
    return total
