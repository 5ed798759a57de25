"""Unit 2's parallelism plugged into the unit 1 training job: data parallelism as a training strategy.

``basics.train.train(config, strategy=...)`` asks a :class:`basics.strategy.Strategy` how to set up,
wrap the model, build the optimizer and run forward/backward (see that module). :class:`DataParallel`
answers with this unit's pieces, chosen by a :class:`DataParallelConfig` whose fields are the
``--ddp``, ``--bucket-size-mb`` and ``--shard-optimizer`` flags of ``scripts/train.py``::

    torchrun --nproc_per_node 2 scripts/train.py --ddp bucketed --shard-optimizer --train-data a.npy

* set-up: :func:`systems.distributed.init_distributed` (rank, world size, this rank's device);
* the model: one of the course's DDP variants (:func:`systems.ddp.wrap_model`);
* the optimizer: AdamW, or :class:`systems.sharded_optimizer.ShardedOptimizer` around it;
* forward/backward: every rank draws the same global batch and trains on its own slice of each
  micro-batch; all but the last micro-batch run under ``no_sync()`` (local accumulation only), and
  ``finish_gradient_synchronization()`` waits for the averaged gradients, so N ranks take the step
  one process would take on the whole batch;
* checkpoints: rank 0 writes the usual file; with a sharded optimizer every other rank writes its
  part of the optimizer state beside it (``checkpoint_N.rankR.pt``).

Other techniques (FSDP, tensor and pipeline parallelism) are further subclasses of
``basics.strategy.Strategy``, selected the same way by ``scripts/train.py``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from basics.checkpoint import checkpoint_path
from basics.optim import AdamW
from basics.strategy import LossFn, MicroBatch, Strategy
from systems.ddp import VARIANTS, wrap_model
from systems.distributed import cleanup_distributed, init_distributed
from systems.sharded_optimizer import ShardedOptimizer

__all__ = ["DataParallelConfig", "DataParallel"]

DDPVariant = Literal["none", "naive", "overlap", "bucketed", "torch"]  # systems.ddp.VARIANTS


@dataclass(frozen=True)
class DataParallelConfig:
    """Data parallelism for the training job (flags of scripts/train.py; used under torchrun)."""

    ddp: DDPVariant = "none"  # data-parallel variant under torchrun
    bucket_size_mb: float = 25.0  # bucket size for ddp=bucketed
    shard_optimizer: bool = False  # shard AdamW state across ranks (systems.sharded_optimizer)

    def __post_init__(self) -> None:
        if self.ddp not in VARIANTS:
            raise ValueError(f"ddp must be one of {', '.join(VARIANTS)}; got {self.ddp!r}")
        if not (math.isfinite(self.bucket_size_mb) and self.bucket_size_mb > 0):
            raise ValueError(f"bucket_size_mb must be a positive number; got {self.bucket_size_mb}")

    @property
    def enabled(self) -> bool:
        """Whether the job needs a process group at all."""
        return self.ddp != "none" or self.shard_optimizer


class DataParallel(Strategy):
    """Data-parallel training over the ``torchrun`` processes (see the module docstring)."""

    def __init__(self, config: DataParallelConfig):
        self.config = config
        self.wrapped: nn.Module | None = None

    def setup(self, device: str) -> torch.device:
        info = init_distributed(device)
        self.rank, self.world_size = info.rank, info.world_size
        return info.device

    def data_shard(self) -> tuple[int, int]:
        return self.rank, self.world_size

    def wrap_model(self, model: nn.Module) -> nn.Module:
        self.wrapped = wrap_model(model, self.config.ddp, self.config.bucket_size_mb)
        return self.wrapped

    def build_optimizer(self, model: nn.Module, **hparams: Any) -> torch.optim.Optimizer:
        if self.config.shard_optimizer:
            return ShardedOptimizer(model.parameters(), AdamW, **hparams)
        return super().build_optimizer(model, **hparams)

    def forward_backward(self, loss_fn: LossFn, micro_batches: Sequence[MicroBatch]) -> Tensor:
        total = torch.zeros((), device=micro_batches[0][0].device)
        for i, (x, y) in enumerate(micro_batches):
            # Only the last micro-batch's backward communicates; the others accumulate locally.
            last = i == len(micro_batches) - 1
            with contextlib.nullcontext() if last else self.wrapped.no_sync():
                loss = loss_fn(x, y) / len(micro_batches)
                loss.backward()
            total += loss.detach()
        self.wrapped.finish_gradient_synchronization()  # gradients are now averaged over the ranks
        return total

    def checkpoint_file(self, directory: Path, step: int) -> Path | None:
        if self.rank != 0 and not self.config.shard_optimizer:
            return None  # rank 0's file holds everything
        return checkpoint_path(directory, step, self.rank)

    def close(self) -> None:
        cleanup_distributed()
