"""Optimizer-state sharding (ZeRO stage 1): each rank keeps optimizer state for its own parameters only.

Course handout (CS336 assignment 2), section "Optimizer state sharding"; Rajbhandari et al., "ZeRO:
Memory Optimizations Toward Training Trillion Parameter Models" (2020), stage 1 (P_os).

In plain data parallelism every rank stores the full optimizer state: for AdamW two fp32 moments per
parameter, i.e. twice the model's size, on every rank. Here each parameter has one *owner* rank.
``step()`` runs the wrapped optimizer (say ``torch.optim.AdamW``) on the owner's parameters only --
so only the owner ever creates state for them -- and then every owner broadcasts its freshly
updated parameters so that all ranks hold the full, identical model again::

    rank r:  step(params owned by r)            state bytes per rank ~ total / world_size
             for p in all params: broadcast(p, src=owner(p))

Gradients must already be averaged over the ranks (e.g. by a DDP wrapper) before ``step()``. Because
each parameter is updated by exactly the same code as in the unsharded optimizer, the final
parameters match it bit for bit.

Owners are chosen greedily to balance bytes: within each param group the parameters are taken
largest first and each goes to the rank with the fewest bytes so far. Every rank computes the same
assignment from the same parameter list, so no communication is needed to agree on it.

Simplifications: ``state_dict()`` is the local shard's state (each rank checkpoints its own); there
is no gather to one full state dict. Gradients are not sharded (that would be ZeRO stage 2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist

from systems.distributed import group_rank_and_size

__all__ = ["ShardedOptimizer", "optimizer_state_bytes"]


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in tensors of an optimizer's state (e.g. AdamW's exp_avg and exp_avg_sq)."""
    if isinstance(optimizer, ShardedOptimizer):
        optimizer = optimizer.local_optimizer
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )


class ShardedOptimizer(torch.optim.Optimizer):
    """Wrap ``optimizer_cls(**kwargs)`` so that each rank keeps state only for the parameters it owns.

    ``param_groups`` lists every parameter (so ``zero_grad`` and learning-rate schedulers see the
    whole model); ``local_optimizer`` holds the owned subset of each group. Hyperparameters are copied
    from ``param_groups`` to the local groups at every ``step()``, so schedulers that edit
    ``param_groups[i]["lr"]`` work as usual. Without a process group it is the plain optimizer.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]],
        optimizer_cls: type[torch.optim.Optimizer],
        **kwargs: Any,
    ) -> None:
        self.optimizer_cls = optimizer_cls
        self.rank, self.world_size = group_rank_and_size()  # (0, 1) without a process group
        self.owner: dict[int, int] = {}  # id(param) -> rank that updates it
        self.rank_bytes = [0] * self.world_size  # parameter bytes assigned to each rank so far
        self.local_optimizer: torch.optim.Optimizer | None = None
        # The base class validates the groups, fills in defaults and calls add_param_group for each.
        super().__init__(params, defaults=kwargs)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)  # checks for duplicates, fills defaults
        group = self.param_groups[-1]
        by_size = sorted(group["params"], key=lambda p: p.numel() * p.element_size(), reverse=True)
        # Greedy largest-first: each parameter goes to the rank with the fewest bytes so far, which
        # keeps the ranks' optimizer states (and update work) about equal.
        for param in by_size:
            rank = min(range(self.world_size), key=lambda r: self.rank_bytes[r])
            self.owner[id(param)] = rank
            self.rank_bytes[rank] += param.numel() * param.element_size()
        local_group = {key: value for key, value in group.items() if key != "params"}
        # The wrapped optimizer sees only this rank's parameters, so it allocates state for them only.
        local_group["params"] = [p for p in group["params"] if self.owner[id(p)] == self.rank]
        if self.local_optimizer is None:
            self.local_optimizer = self.optimizer_cls([local_group], **self.defaults)
        else:
            self.local_optimizer.add_param_group(local_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, local_group in zip(self.param_groups, self.local_optimizer.param_groups):
            for key, value in group.items():
                if key != "params":
                    local_group[key] = value  # e.g. an lr set by a scheduler
        self.local_optimizer.step()  # updates only the parameters this rank owns
        if self.world_size > 1:
            # Every rank takes part in every broadcast; the owner's copy overwrites the others.
            # Frozen parameters never change, so they are not sent.
            works = [
                dist.broadcast(param.data, src=self.owner[id(param)], async_op=True)
                for group in self.param_groups
                for param in group["params"]
                if param.requires_grad
            ]
            for work in works:
                work.wait()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """This rank's shard of the optimizer state (each rank saves its own)."""
        return self.local_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a shard saved by :meth:`state_dict` on the same rank with the same world size."""
        self.local_optimizer.load_state_dict(state_dict)
