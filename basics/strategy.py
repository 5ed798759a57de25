"""How the training job spreads over processes: the hook that unit 2 plugs its parallelism into.

:func:`basics.train.train` never names a parallel technique. It asks a *strategy* a handful of
questions, and the default :class:`Strategy` answers them for one process on one device::

    setup(device)                        -> the torch.device this process trains on
    data_shard()                         -> (index, count): which slice of every micro-batch is ours
    wrap_model(model)                    -> the module that runs forward/backward (DDP, FSDP, ...)
    build_optimizer(wrapped, **hparams)  -> AdamW over the wrapped model's parameters (maybe shards)
    load_checkpoint(payload, model, opt) -> put a (plain, single-process format) checkpoint in place
    loss_fn(wrapped, standard)           -> the (x, y) -> loss the job trains and evaluates with
    forward_backward(loss_fn, batches)   -> summed loss; gradients ready (and synchronised)
    clip_gradients(model, max_norm)      -> the global gradient norm, gradients clipped in place
    checkpoint_state(model, optimizer)   -> what save_checkpoint writes (every rank calls it)
    checkpoint_file(directory, step)     -> where this rank writes its checkpoint (None: nothing)
    close()                              -> tear down (process groups, ...)

``systems`` subclasses it (``systems.strategy.DataParallel`` wraps the model in one of the course's
DDP variants and can shard AdamW's state) and ``scripts/train.py`` passes an instance to ``train``;
``basics`` itself imports nothing from ``systems``, so the dependency runs one way. A new technique
(FSDP, tensor or pipeline parallelism) is a new subclass that overrides the answers it changes.

Every answer here is the single-process one, so the class doubles as the readable reference for the
training step: micro-batches accumulate gradients (each loss divided by their number, so the sum is
the gradient of the mean), and the returned loss stays on the device (no host sync).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from basics.checkpoint import apply_checkpoint, checkpoint_path
from basics.device import resolve_device
from basics.nn_utils import clip_gradients
from basics.optim import AdamW

__all__ = ["Strategy", "MicroBatch", "LossFn"]

MicroBatch = tuple[Tensor, Tensor]  # (inputs, targets), each (batch, seq)
LossFn = Callable[[Tensor, Tensor], Tensor]  # (inputs, targets) -> scalar mean loss


class Strategy:
    """One process, one device: the default answers (see the module docstring)."""

    rank: int = 0  # this process among all of the job's processes; 0 logs and writes metrics
    world_size: int = 1  # processes in the job

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def setup(self, device: str) -> torch.device:
        """Start whatever the strategy needs and return the device this process trains on."""
        return resolve_device(device)

    def data_shard(self) -> tuple[int, int]:
        """``(index, count)``: every micro-batch is cut into ``count`` slices; this rank trains on slice
        ``index``. Data parallelism gives each rank its own; model parallelism shares one."""
        return 0, 1

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model

    def build_optimizer(self, model: nn.Module, **hparams: Any) -> torch.optim.Optimizer:
        return AdamW(model.parameters(), **hparams)

    def load_checkpoint(
        self, payload: dict, model: nn.Module, optimizer: torch.optim.Optimizer, name: str = "checkpoint"
    ) -> int:
        """Load a checkpoint payload (``basics.checkpoint.read_checkpoint``) into the job, RNG states
        included; return its step. Sharding strategies cut the full state into their pieces."""
        return apply_checkpoint(payload, model, optimizer, restore_rng=True, name=name)

    def loss_fn(self, model: nn.Module, standard: LossFn) -> LossFn:
        """The loss the job trains and evaluates with; ``standard`` is cross-entropy of ``model``'s
        logits. Model parallelism replaces it (e.g. a loss over vocabulary shards)."""
        return standard

    def checkpoint_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        """``(model, optimizer)`` as ``save_checkpoint`` takes them (anything with ``state_dict()``).
        Every rank calls it before the ranks named by :meth:`checkpoint_file` write, so a sharding
        strategy can gather the full state here."""
        return model, optimizer

    def forward_backward(self, loss_fn: LossFn, micro_batches: Sequence[MicroBatch]) -> Tensor:
        """Accumulate the gradient of the mean loss over ``micro_batches``; return that mean (on the device)."""
        total = torch.zeros((), device=micro_batches[0][0].device)
        for x, y in micro_batches:
            loss = loss_fn(x, y) / len(micro_batches)  # so the summed gradients are the mean's
            loss.backward()
            total += loss.detach()  # stays on the device: no .item(), no sync
        return total

    def clip_gradients(self, model: nn.Module, max_norm: float) -> Tensor:
        """Clip to ``max_norm`` (0 = off) and return the global L2 norm before clipping (a device tensor),
        which the job also watches for divergence."""
        if max_norm > 0:
            return clip_gradients(model.parameters(), max_norm)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())

    def checkpoint_file(self, directory: Path, step: int) -> Path | None:
        """Rank 0 writes the checkpoint; other ranks write nothing unless a subclass says so."""
        return checkpoint_path(directory, step) if self.is_main else None

    def close(self) -> None:
        pass
