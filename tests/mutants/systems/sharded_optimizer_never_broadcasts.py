"""The sharded optimizer steps each rank's shard but never broadcasts the updated parameters."""

from __future__ import annotations

import torch.distributed as dist

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_parallel.py::test_sharded_optimizer",
]


_get = get_sharded_optimizer  # noqa: F405


class _Done:
    def wait(self):
        return None


def get_sharded_optimizer(params, optimizer_cls, **kwargs):
    optimizer = _get(params, optimizer_cls, **kwargs)
    real_broadcast = dist.broadcast

    def step(closure=None, _step=optimizer.step):
        dist.broadcast = lambda *a, **k: _Done()  # the mistake: no broadcast after the step
        try:
            return _step(closure)
        finally:
            dist.broadcast = real_broadcast

    optimizer.step = step
    return optimizer
