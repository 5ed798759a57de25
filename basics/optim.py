"""AdamW and learning-rate schedules (cosine with warmup, warmup-stable-decay).

Course handout (CS336 assignment 1), sections "AdamW" and "Learning rate scheduling"; AdamW is from
Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (2019), Algorithm 2.

AdamW, one step t = 1, 2, ... for a parameter theta with gradient g:

    theta <- theta - lr * weight_decay * theta              (decoupled weight decay)
    m     <- beta1 * m + (1 - beta1) * g                     (first moment)
    v     <- beta2 * v + (1 - beta2) * g^2                   (second moment)
    theta <- theta - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

Simplification / deliberate choice: the handout writes the last line as
``alpha_t * m / (sqrt(v) + eps)`` with ``alpha_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`` and applies
the weight decay after the update. That differs from ``torch.optim.AdamW`` only in where ``eps`` sits
(scaled by the bias correction or not) and in the order of two commuting-to-first-order updates. We
follow torch's order so that the two agree to float rounding, which the tests check over 1000 steps.

Two implementations of the same step: the readable one loops over parameters (about eight small
kernels per parameter tensor), and ``foreach=True`` runs each line of the update once for *all*
parameters with torch's multi-tensor ``torch._foreach_*`` ops (a handful of launches per step on a
GPU). Both give the same numbers, which the tests check against each other and against torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["AdamW", "lr_cosine_schedule", "lr_wsd_schedule"]


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay; per-group ``lr``, ``betas``, ``eps`` and ``weight_decay``.

    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.0)
    >>> w.sum().backward(); opt.step()
    >>> w.detach()                  # the first Adam step moves every entry by lr * sign(grad)
    tensor([0.9000, 0.9000, 0.9000])
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        *,
        foreach: bool = False,
    ) -> None:
        if lr < 0:
            raise ValueError(f"AdamW: invalid learning rate {lr} (must be >= 0)")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamW: invalid betas {betas} (each must be in [0, 1))")
        if eps < 0:
            raise ValueError(f"AdamW: invalid eps {eps} (must be >= 0)")
        if weight_decay < 0:
            raise ValueError(f"AdamW: invalid weight_decay {weight_decay} (must be >= 0)")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.foreach = foreach  # multi-tensor update (same numbers, fewer kernel launches)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # A parameter without a gradient (unused this step) gets no update, not even weight decay.
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise ValueError("AdamW does not support sparse gradients")
            if self.foreach:
                for same_kind in _by_device_and_dtype(params):
                    self._step_foreach(group, same_kind)
            else:
                self._step_readable(group, params)
        return loss

    def _state(self, p: torch.nn.Parameter) -> dict[str, Any]:
        """The per-parameter state, created on first use, with its step count advanced by one."""
        state = self.state[p]
        if not state:
            # Moments in the parameter's dtype and device; "step" is a plain int so that a
            # checkpoint of the state dict loads with torch.load(weights_only=True), and so that
            # the bias corrections below are Python floats (no tensor math, no host sync).
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] = int(state["step"]) + 1
        return state

    def _step_readable(self, group: dict[str, Any], params: list[torch.nn.Parameter]) -> None:
        lr, (beta1, beta2) = group["lr"], group["betas"]
        eps, weight_decay = group["eps"], group["weight_decay"]
        for p in params:
            grad, state = p.grad, self._state(p)
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
            p.mul_(1.0 - lr * weight_decay)  # decoupled weight decay, before the Adam update
            m.lerp_(grad, 1.0 - beta1)  # m + (1 - beta1)(g - m) = beta1 m + (1 - beta1) g
            v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)  # beta2 v + (1 - beta2) g^2
            # Bias corrections undo the moments' start at zero: early m, v are too small by 1 - beta^t.
            bias_correction1 = 1.0 - beta1**t
            bias_correction2_sqrt = math.sqrt(1.0 - beta2**t)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(eps)  # sqrt(v_hat) + eps
            p.addcdiv_(m, denom, value=-lr / bias_correction1)  # theta -= lr m_hat / (sqrt(v_hat) + eps)

    def _step_foreach(self, group: dict[str, Any], params: list[torch.nn.Parameter]) -> None:
        """The lines of :meth:`_step_readable`, each applied to every parameter of one device and
        dtype at once. Parameters may be at different steps (one without a gradient skips a step),
        so the bias corrections are lists with one scalar per parameter."""
        lr, (beta1, beta2) = group["lr"], group["betas"]
        eps, weight_decay = group["eps"], group["weight_decay"]
        grads = [p.grad for p in params]
        states = [self._state(p) for p in params]
        ms, vs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(params, 1.0 - lr * weight_decay)  # theta *= 1 - lr wd, for every theta
        torch._foreach_lerp_(ms, grads, 1.0 - beta1)  # m = beta1 m + (1 - beta1) g
        torch._foreach_mul_(vs, beta2)  # v = beta2 v ...
        torch._foreach_addcmul_(vs, grads, grads, value=1.0 - beta2)  # ... + (1 - beta2) g^2
        # Per-parameter Python floats, as in the readable loop (each parameter has its own t).
        step_sizes = [-lr / (1.0 - beta1 ** s["step"]) for s in states]
        denoms = torch._foreach_sqrt(vs)  # new tensors: v itself stays as it is
        torch._foreach_div_(denoms, [math.sqrt(1.0 - beta2 ** s["step"]) for s in states])
        torch._foreach_add_(denoms, eps)  # sqrt(v_hat) + eps
        torch._foreach_addcdiv_(params, ms, denoms, step_sizes)  # theta -= lr m_hat / (sqrt(v_hat) + eps)


def _by_device_and_dtype(params: list[torch.nn.Parameter]) -> list[list[torch.nn.Parameter]]:
    """Multi-tensor kernels take lists on one device with one dtype: group by both, keeping order."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault((p.device, p.dtype), []).append(p)
    return list(groups.values())


def _check_iters(**iters: int) -> None:
    for name, value in iters.items():
        if value < 0:
            raise ValueError(f"learning-rate schedule: {name} must be >= 0, got {value}")


def lr_cosine_schedule(
    it: int,
    max_learning_rate: float,
    min_learning_rate: float,
    warmup_iters: int,
    cosine_cycle_iters: int,
) -> float:
    """Linear warmup to ``max_learning_rate``, cosine decay to ``min_learning_rate``, then constant.

    With Tw = ``warmup_iters`` and Tc = ``cosine_cycle_iters`` (the iteration where the cosine ends,
    counted from 0, not the cosine's length):

        it < Tw:        it / Tw * max
        Tw <= it <= Tc: min + 1/2 (1 + cos(pi (it - Tw) / (Tc - Tw))) (max - min)
        it > Tc:        min

    >>> [round(lr_cosine_schedule(it, 1.0, 0.1, 2, 6), 4) for it in range(8)]
    [0.0, 0.5, 1.0, 0.8682, 0.55, 0.2318, 0.1, 0.1]
    """
    _check_iters(it=it, warmup_iters=warmup_iters, cosine_cycle_iters=cosine_cycle_iters)
    if cosine_cycle_iters < warmup_iters:
        raise ValueError(
            f"lr_cosine_schedule: cosine_cycle_iters ({cosine_cycle_iters}) must be >= warmup_iters ({warmup_iters})"
        )
    if it < warmup_iters:  # warmup: a small lr while Adam's second moments are still poor estimates
        return it / warmup_iters * max_learning_rate
    if it > cosine_cycle_iters:
        return min_learning_rate
    if cosine_cycle_iters == warmup_iters:  # a cosine of length 0: we are exactly at its start
        return max_learning_rate
    progress = (it - warmup_iters) / (cosine_cycle_iters - warmup_iters)  # 0 -> 1 over the cosine
    # 1/2 (1 + cos(pi p)) falls smoothly from 1 to 0: slow at both ends, fastest in the middle.
    return min_learning_rate + 0.5 * (1.0 + math.cos(math.pi * progress)) * (
        max_learning_rate - min_learning_rate
    )


def lr_wsd_schedule(
    it: int,
    max_learning_rate: float,
    min_learning_rate: float,
    warmup_iters: int,
    stable_iters: int,
    decay_iters: int,
    *,
    decay_shape: str = "linear",
) -> float:
    """Warmup-stable-decay (WSD; Hu et al., "MiniCPM", 2024): warm up, hold, then decay to the minimum.

    With Tw = ``warmup_iters``, Ts = ``stable_iters``, Td = ``decay_iters`` (lengths of the phases):

        it < Tw:                 it / Tw * max                    (linear warmup, as in the cosine schedule)
        Tw <= it < Tw+Ts:        max                              (stable)
        Tw+Ts <= it <= Tw+Ts+Td: max -> min over Td iterations    (decay; f = (it - Tw - Ts) / Td)
                                 linear: max - f (max - min);  cosine: min + 1/2 (1 + cos(pi f)) (max - min)
        it > Tw+Ts+Td:           min

    The point of WSD is that the stable phase can be continued from a checkpoint for any length and
    then decayed briefly, where a cosine schedule fixes the run's length up front.

    >>> [lr_wsd_schedule(it, 1.0, 0.0, 2, 2, 4) for it in range(10)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """
    _check_iters(it=it, warmup_iters=warmup_iters, stable_iters=stable_iters, decay_iters=decay_iters)
    if decay_shape not in ("linear", "cosine"):
        raise ValueError(f"lr_wsd_schedule: decay_shape must be 'linear' or 'cosine', got {decay_shape!r}")
    if it < warmup_iters:
        return it / warmup_iters * max_learning_rate
    decay_start = warmup_iters + stable_iters  # the stable phase ends here (resume point for longer runs)
    if it < decay_start:
        return max_learning_rate
    if it >= decay_start + decay_iters:
        return min_learning_rate
    f = (it - decay_start) / decay_iters  # in [0, 1); decay_iters > 0 here
    if decay_shape == "linear":
        return max_learning_rate - f * (max_learning_rate - min_learning_rate)
    return min_learning_rate + 0.5 * (1.0 + math.cos(math.pi * f)) * (max_learning_rate - min_learning_rate)
