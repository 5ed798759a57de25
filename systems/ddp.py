"""Data-parallel training: naive, overlapped (one all-reduce per parameter) and bucketed DDP.

Course handout (CS336 assignment 2), section "Distributed data parallel training"; the bucketing and
overlap follow Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training"
(VLDB 2020), which describes ``torch.nn.parallel.DistributedDataParallel``.

Every rank holds a full copy of the model and sees a different slice of the batch. After backward
each rank has the gradient of *its* mean loss; averaging those gradients over the ranks gives the
gradient of the mean loss over the whole (global) batch, so all ranks take the same optimizer step
and stay identical -- provided they started identical, which is why each wrapper broadcasts rank 0's
parameters and buffers when it is built::

    grad = (1 / world_size) * sum_r grad_r          (all-reduce SUM, then divide: gloo has no AVG)

Three ways to do the all-reduce, from slowest to fastest:

* :class:`DDPNaive` -- after backward, one blocking all-reduce per gradient. Communication starts
  only when computation has ended, and many small messages pay the per-message latency many times.
* :class:`DDPIndividualParameters` -- a post-accumulate-grad hook launches an *async* all-reduce for
  each parameter the moment its gradient is ready, so communication of the last layers overlaps the
  backward pass of the first ones. :meth:`finish_gradient_synchronization` waits and averages.
* :class:`DDPBucketed` -- the same overlap, but gradients are grouped into buckets of about
  ``bucket_size_mb`` MiB (in reverse parameter order, roughly the order backward produces them);
  a bucket is flattened into one buffer and all-reduced once all its gradients are ready. Fewer,
  larger messages amortise latency; buckets that are too large delay the start of communication.

The training loop is the same for all of them (and for :func:`wrap_model`'s ``"torch"`` variant)::

    ddp = DDPBucketed(model, bucket_size_mb=25.0)
    for batch in loader:
        ddp.on_train_batch_start()
        loss = loss_fn(ddp(batch.inputs), batch.targets)
        loss.backward()
        ddp.finish_gradient_synchronization()   # gradients are now averaged over ranks
        optimizer.step(); optimizer.zero_grad()

Deliberate simplifications: the same parameters must receive gradients on every rank in every step
(torch's ``find_unused_parameters=False``); buckets copy gradients into a fresh flat buffer each
step instead of making ``.grad`` a view into a persistent bucket (torch's ``gradient_as_bucket_view``).
For gradient accumulation wrap the non-final micro-steps in ``with ddp.no_sync():``.

Under ``torch.compile`` the overlap needs care. Compiling the whole model (the training job's
``--compile``) makes its backward one graph, and every parameter's gradient is accumulated -- and its
hook fired -- only when that graph has finished: :class:`DDPIndividualParameters` and
:class:`DDPBucketed` stay correct but start communicating after the whole backward, like
:class:`DDPNaive`. Measured on the CPU (order and time of the post-accumulate-grad hooks of a
two-layer model): whole-model compile fires all hooks at the end of backward; compiling each
Transformer block on its own (``for block in model.layers: block.compile()``) fires a block's hooks
as soon as its backward is done, before the earlier blocks' backward runs, which restores the overlap
at block granularity; compiled autograd (``torch._dynamo.config.compiled_autograd = True``) still
fired them all at the end. torch's own DDP (``wrap_model(..., "torch")``) keeps its overlap under
``torch.compile``: Dynamo splits the graph at its bucket boundaries (``optimize_ddp``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from systems.distributed import (
    DistributedInfo,
    broadcast_from_rank0,
    cleanup_distributed,
    init_distributed,
    is_distributed,
)

__all__ = [
    "DDPNaive",
    "DDPIndividualParameters",
    "DDPBucketed",
    "TorchDDP",
    "NoDataParallel",
    "VARIANTS",
    "wrap_model",
    "broadcast_from_rank0",
    "DistributedInfo",
    "init_distributed",
    "cleanup_distributed",
]

VARIANTS = ("none", "naive", "overlap", "bucketed", "torch")
_MIB = 1024 * 1024


def _require_process_group(name: str) -> None:
    if not is_distributed():
        raise ValueError(
            f"{name} needs an initialised process group (call init_distributed() under torchrun)"
        )


def _trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Each parameter that needs a gradient, once: ``parameters()`` already drops tied duplicates."""
    return [p for p in module.parameters() if p.requires_grad]


class _DataParallel(nn.Module):
    """What every variant shares: ``.module``, forward, the per-step hooks and ``no_sync``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self._sync_enabled = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def on_train_batch_start(self) -> None:
        """Called before each step's forward; nothing to reset by default."""

    def finish_gradient_synchronization(self) -> None:
        """Block until every gradient is averaged over the ranks."""
        raise NotImplementedError

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes inside the block only accumulate local gradients (gradient accumulation);
        the first backward outside it synchronises the accumulated sum."""
        previous, self._sync_enabled = self._sync_enabled, False
        try:
            yield
        finally:
            self._sync_enabled = previous


class NoDataParallel(_DataParallel):
    """Single-process stand-in with the same interface: nothing to synchronise."""

    def finish_gradient_synchronization(self) -> None:
        pass


class DDPNaive(_DataParallel):
    """After backward, all-reduce every gradient one by one and divide by the world size."""

    def __init__(self, module: nn.Module) -> None:
        _require_process_group("DDPNaive")
        super().__init__(module)
        broadcast_from_rank0(module)

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        if not self._sync_enabled:
            return
        world_size = dist.get_world_size()
        # Each rank's gradient is the mean over its own shard of the batch; the mean over ranks is
        # then the gradient of the whole batch (equal shard sizes).
        for param in _trainable_parameters(self.module):
            if param.grad is not None:
                dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)  # blocking: waits for every rank
                param.grad.div_(world_size)


class DDPIndividualParameters(_DataParallel):
    """Overlap communication with backward: an async all-reduce per parameter, launched by a hook."""

    def __init__(self, module: nn.Module) -> None:
        _require_process_group("DDPIndividualParameters")
        super().__init__(module)
        broadcast_from_rank0(module)
        self._pending: list[tuple[nn.Parameter, dist.Work]] = []
        self._launched: set[int] = set()
        for param in _trainable_parameters(module):
            param.register_post_accumulate_grad_hook(self._on_gradient_ready)

    def _on_gradient_ready(self, param: nn.Parameter) -> None:
        # Runs inside backward, right after param.grad has received this step's full gradient
        # (for a tied parameter: the sum over all its uses, so the hook fires once).
        if not self._sync_enabled:
            return
        if id(param) in self._launched:
            raise RuntimeError(
                "a gradient became ready twice before finish_gradient_synchronization(); "
                "wrap accumulation micro-steps in no_sync()"
            )
        self._launched.add(id(param))
        # async: backward continues with earlier layers while this gradient is on the wire.
        work = dist.all_reduce(param.grad, op=dist.ReduceOp.SUM, async_op=True)
        self._pending.append((param, work))

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        world_size = dist.get_world_size()
        for param, work in self._pending:
            work.wait()  # most finished during backward; the last layers' are waited for here
            param.grad.div_(world_size)
        self._pending.clear()
        self._launched.clear()


@dataclass
class _Bucket:
    """Parameters whose gradients travel together in one flat all-reduce."""

    params: list[nn.Parameter]
    num_ready: int = 0
    flat: torch.Tensor | None = None  # the flattened gradients being reduced
    work: dist.Work | None = None
    present: list[bool] = field(default_factory=list)  # which params had a gradient at launch


def _assign_buckets(params: list[nn.Parameter], bucket_bytes: float) -> list[list[nn.Parameter]]:
    """Greedy packing in the given order; a new bucket when the next gradient would overflow the
    current one or has another dtype/device. A parameter larger than a bucket gets one of its own."""
    buckets: list[list[nn.Parameter]] = []
    current: list[nn.Parameter] = []
    current_bytes = 0
    for param in params:
        size = param.numel() * param.element_size()  # bytes of its gradient
        # One flat buffer per bucket, so every gradient in it must share a dtype and a device.
        compatible = not current or (current[0].dtype, current[0].device) == (param.dtype, param.device)
        if current and (current_bytes + size > bucket_bytes or not compatible):
            buckets.append(current)
            current, current_bytes = [], 0
        current.append(param)
        current_bytes += size
    if current:
        buckets.append(current)
    return buckets


class DDPBucketed(_DataParallel):
    """Overlapped DDP with gradients packed into buckets of about ``bucket_size_mb`` MiB each."""

    def __init__(self, module: nn.Module, bucket_size_mb: float) -> None:
        if not bucket_size_mb > 0:
            raise ValueError(f"DDPBucketed: bucket_size_mb must be > 0, got {bucket_size_mb}")
        _require_process_group("DDPBucketed")
        super().__init__(module)
        broadcast_from_rank0(module)
        # Backward produces gradients roughly from the last layer to the first, so fill buckets in
        # reverse parameter order: the first bucket to complete is the first one sent.
        order = list(reversed(_trainable_parameters(module)))
        self.buckets = [_Bucket(params) for params in _assign_buckets(order, bucket_size_mb * _MIB)]
        self._bucket_of = {id(p): i for i, bucket in enumerate(self.buckets) for p in bucket.params}
        for param in order:
            param.register_post_accumulate_grad_hook(self._on_gradient_ready)

    def on_train_batch_start(self) -> None:
        for bucket in self.buckets:
            if bucket.work is not None:
                raise RuntimeError(
                    "DDPBucketed: previous step's finish_gradient_synchronization() was not called"
                )
            bucket.num_ready = 0

    def _on_gradient_ready(self, param: nn.Parameter) -> None:
        if not self._sync_enabled:
            return
        bucket = self.buckets[self._bucket_of[id(param)]]
        if bucket.work is not None:
            raise RuntimeError(
                "a gradient became ready twice before finish_gradient_synchronization(); "
                "wrap accumulation micro-steps in no_sync()"
            )
        bucket.num_ready += 1
        if bucket.num_ready == len(bucket.params):  # the bucket's last gradient: send it now
            self._launch(bucket)

    @torch.no_grad()
    def _launch(self, bucket: _Bucket) -> None:
        bucket.present = [p.grad is not None for p in bucket.params]
        # A parameter unused this step sends zeros, so every rank's buffer has the same layout.
        parts = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in bucket.params]
        bucket.flat = torch.cat(parts)  # one contiguous buffer: one message instead of len(parts)
        bucket.work = dist.all_reduce(bucket.flat, op=dist.ReduceOp.SUM, async_op=True)

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        if not self._sync_enabled:
            return
        world_size = dist.get_world_size()
        for bucket in self.buckets:
            if bucket.work is None:
                if not any(p.grad is not None for p in bucket.params):
                    continue  # no gradients in this bucket on this step (e.g. before any backward)
                self._launch(bucket)  # some parameter was unused this step: send what there is
            bucket.work.wait()
            bucket.flat.div_(world_size)
            # Unflatten: copy each slice back into its parameter's gradient.
            offset = 0
            for param, present in zip(bucket.params, bucket.present):
                n = param.numel()
                if present:
                    param.grad.copy_(bucket.flat[offset : offset + n].view_as(param.grad))
                offset += n
            bucket.flat, bucket.work, bucket.num_ready = None, None, 0


class TorchDDP(_DataParallel):
    """``torch.nn.parallel.DistributedDataParallel`` behind the same interface (the reference peer)."""

    def __init__(self, module: nn.Module, bucket_size_mb: float = 25.0) -> None:
        _require_process_group("TorchDDP")
        super().__init__(module)
        device = next(module.parameters()).device
        device_ids = [device.index] if device.type == "cuda" else None
        # Registered under another name so that `.module` stays the user's model.
        self.ddp = nn.parallel.DistributedDataParallel(
            module, device_ids=device_ids, bucket_cap_mb=bucket_size_mb
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.ddp(*args, **kwargs)

    def finish_gradient_synchronization(self) -> None:
        pass  # torch's reducer has already waited for its all-reduces at the end of backward

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        with self.ddp.no_sync():
            yield


def wrap_model(module: nn.Module, variant: str, bucket_size_mb: float = 25.0) -> _DataParallel:
    """Wrap ``module`` for data-parallel training; ``variant`` is one of :data:`VARIANTS`.

    ``"naive"`` -> :class:`DDPNaive`, ``"overlap"`` -> :class:`DDPIndividualParameters`,
    ``"bucketed"`` -> :class:`DDPBucketed`, ``"torch"`` -> :class:`TorchDDP`, ``"none"`` ->
    :class:`NoDataParallel`. Every result has ``.module``, forward, ``on_train_batch_start()``,
    ``finish_gradient_synchronization()`` and ``no_sync()``. Without a process group (a plain
    single-process run) every variant is :class:`NoDataParallel`: with one rank, averaging over ranks
    is the identity, so the run is the same.
    """
    if variant not in VARIANTS:
        raise ValueError(f"wrap_model: unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if variant == "none" or not is_distributed():
        return NoDataParallel(module)
    if variant == "naive":
        return DDPNaive(module)
    if variant == "overlap":
        return DDPIndividualParameters(module)
    if variant == "bucketed":
        return DDPBucketed(module, bucket_size_mb)
    return TorchDDP(module, bucket_size_mb)
