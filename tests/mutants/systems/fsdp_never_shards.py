"""FSDP that never shards: every rank keeps every weight whole (a one-rank group each) and averages
the full gradients, which trains correctly but holds the whole model on every rank."""

from __future__ import annotations

import torch.distributed as dist

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_fsdp.py::test_fsdp_memory_per_rank_is_a_shard",
]


def get_fsdp(module, compute_dtype=None):
    from systems.fsdp import FSDP

    alone = [dist.new_group([rank]) for rank in range(dist.get_world_size())]  # every rank makes every group
    return FSDP(module, compute_dtype, group=alone[dist.get_rank()])  # the mistake: one shard = all


def fsdp_on_after_backward(fsdp_model, optimizer):
    fsdp_model.finish_gradient_synchronization()
    for p in fsdp_model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(dist.get_world_size())
