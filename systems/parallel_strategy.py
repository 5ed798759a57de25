"""FSDP, tensor and pipeline parallelism in the training job: ``--fsdp``, ``--tp K``, ``--pp K``.

``scripts/train.py`` hands :func:`basics.train.train` a :class:`basics.strategy.Strategy`; this module
adds three, chosen by :class:`ParallelConfig` (whose fields are the flags)::

    torchrun --nproc_per_node 2 scripts/train.py --fsdp --train-data a.npy --val-data b.npy
    torchrun --nproc_per_node 4 scripts/train.py --tp 2 ...      # 2-way tensor x 2-way data parallel
    torchrun --nproc_per_node 2 scripts/train.py --pp 2 --grad-accum-steps 4 ...   # 4 micro-batches

The ranks form a device mesh (``torch.distributed.device_mesh``) of shape (data, model): tensor or
pipeline parallelism over groups of K ranks, data parallelism over the rest (each group trains on
its own slice of every batch; gradients are averaged over the data-parallel groups after backward).
FSDP shards over all ranks, which is itself data parallel.

* :class:`FSDPStrategy`: :class:`systems.fsdp.FSDP` (optionally ``--fsdp-compute-dtype bfloat16``);
  the gradient norm for clipping sums the shards' squares over the ranks.
* :class:`TensorParallelStrategy`: :class:`systems.tensor_parallel.TensorParallel`; the loss is the
  vocab-parallel cross-entropy (never the full logits); norms sum the split weights over the group.
* :class:`PipelineStrategy`: :class:`systems.pipeline_parallel.PipelineParallel`; the micro-batches of
  gradient accumulation are the pipeline's micro-batches (``--grad-accum-steps`` = m), scheduled
  with ``--pp-schedule`` (1f1b or gpipe); evaluation runs the pipeline forward only.

Checkpoints stay portable: every strategy gathers the whole model and the whole AdamW state, and
rank 0 writes the ordinary single-process file. So a run can resume under any other layout (or
none): the weights are cut up afresh when loaded. What cannot be converted is refused with a clear
error -- a checkpoint whose optimizer state is split over several files (``--shard-optimizer``).
The logged training loss is the mean over the data-parallel ranks, i.e. the loss of the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from basics.checkpoint import restore_rng_state
from basics.nn_utils import CLIP_EPS, cross_entropy
from basics.strategy import LossFn, MicroBatch, Strategy
from systems.ddp import broadcast_from_rank0
from systems.distributed import cleanup_distributed, init_distributed
from systems.fsdp import FSDP
from systems.pipeline_parallel import SCHEDULES, PipelineParallel
from systems.sharded_checkpoint import StateHolder as _State
from systems.tensor_parallel import TensorParallel

__all__ = ["ParallelConfig", "FSDPStrategy", "TensorParallelStrategy", "PipelineStrategy", "make_strategy"]

DTYPES = {"none": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ParallelConfig:
    """Model parallelism for the training job (flags of scripts/train.py; used under torchrun)."""

    fsdp: bool = False  # shard weights, gradients and AdamW state over all ranks (systems.fsdp)
    fsdp_compute_dtype: Literal["none", "bfloat16", "float16"] = "none"  # FSDP forward/backward dtype
    tp: int = 1  # tensor-parallel group size (Megatron); data parallel over the rest
    pp: int = 1  # pipeline stages; data parallel over the rest
    pp_schedule: Literal["1f1b", "gpipe"] = "1f1b"  # pipeline schedule

    def __post_init__(self) -> None:
        for name in ("tp", "pp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name} must be a positive integer; got {value!r}")
        if sum((self.fsdp, self.tp > 1, self.pp > 1)) > 1:
            raise ValueError("choose one of --fsdp, --tp K, --pp K (each is combined with data parallelism)")
        if self.fsdp_compute_dtype not in DTYPES:
            raise ValueError(f"fsdp_compute_dtype must be one of {', '.join(DTYPES)}")
        if self.fsdp_compute_dtype != "none" and not self.fsdp:
            raise ValueError("--fsdp-compute-dtype needs --fsdp")
        if self.pp_schedule not in SCHEDULES:
            raise ValueError(f"pp_schedule must be one of {', '.join(SCHEDULES)}")

    @property
    def enabled(self) -> bool:
        return self.fsdp or self.tp > 1 or self.pp > 1


def make_strategy(config: ParallelConfig) -> Strategy:
    if config.fsdp:
        return FSDPStrategy(DTYPES[config.fsdp_compute_dtype])
    if config.tp > 1:
        return TensorParallelStrategy(config.tp)
    return PipelineStrategy(config.pp, config.pp_schedule)


@torch.no_grad()
def _average(tensors: list[Tensor], group) -> None:
    """All-reduce and average in place, as one flat message."""
    if not tensors or dist.get_world_size(group) == 1:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])  # (total numel,) fp32
    dist.all_reduce(flat, group=group)
    flat /= dist.get_world_size(group)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


@torch.no_grad()
def _clip(params: list[nn.Parameter], squared_norm: Tensor, max_norm: float) -> Tensor:
    """Scale every gradient by min(1, max_norm / (norm + eps)) given the global squared norm."""
    norm = squared_norm.sqrt()
    if max_norm > 0:
        scale = (max_norm / (norm + CLIP_EPS)).clamp(max=1.0)
        for p in params:
            if p.grad is not None:
                p.grad.mul_(scale.to(p.grad.dtype))
    return norm


def _squares(params) -> Tensor:
    grads = [p.grad.detach().float().pow(2).sum() for p in params if p.grad is not None]
    return torch.stack(grads).sum() if grads else torch.zeros(())


def _check_optimizer_state(state_dict: dict, num_params: int, name: str) -> None:
    """Refuse optimizer state that covers only part of the model (a ``--shard-optimizer`` file)."""
    if 0 < len(state_dict["state"]) < num_params:
        raise ValueError(
            f"{name}: its optimizer state covers {len(state_dict['state'])} of {num_params} parameters "
            "(written by a sharded optimizer?); resume it with the layout that wrote it"
        )


class _MeshStrategy(Strategy):
    """Set-up shared by the three: the process group, the (data, model) mesh, averaging over data."""

    model_size = 1  # ranks per model-parallel group

    def setup(self, device: str) -> torch.device:
        info = init_distributed(device)
        self.rank, self.world_size, self.device = info.rank, info.world_size, info.device
        if not info.is_distributed:
            raise ValueError("this parallel mode needs torchrun (e.g. torchrun --nproc_per_node 2 ...)")
        if self.world_size % self.model_size:
            raise ValueError(f"{self.world_size} ranks do not split into groups of {self.model_size}")
        from torch.distributed.device_mesh import init_device_mesh

        shape = (self.world_size // self.model_size, self.model_size)
        self.mesh = init_device_mesh(info.device.type, shape, mesh_dim_names=("data", "model"))
        self.data_group, self.model_group = self.mesh.get_group("data"), self.mesh.get_group("model")
        return info.device

    def data_shard(self) -> tuple[int, int]:
        return self.mesh.get_local_rank("data"), self.mesh.size(0)

    def _sync_data_parallel(self, params, loss: Tensor) -> Tensor:
        """Average gradients (and the logged loss) over the data-parallel groups."""
        _average([p.grad for p in params if p.grad is not None], self.data_group)
        loss = loss.detach().clone().reshape(1)  # () -> (1,): a piece of _average's flat message
        _average([loss], self.data_group)
        return loss.reshape(())  # back to a scalar

    def close(self) -> None:
        cleanup_distributed()


class FSDPStrategy(_MeshStrategy):
    def __init__(self, compute_dtype: torch.dtype | None = None):
        self.compute_dtype = compute_dtype

    def data_shard(self) -> tuple[int, int]:
        return self.rank, self.world_size  # FSDP is data parallel over every rank

    def wrap_model(self, model: nn.Module) -> nn.Module:
        self.fsdp = FSDP(model, self.compute_dtype)
        return self.fsdp

    def forward_backward(self, loss_fn: LossFn, micro_batches: Sequence[MicroBatch]) -> Tensor:
        total = super().forward_backward(loss_fn, micro_batches)  # each backward reduce-scatters
        self.fsdp.finish_gradient_synchronization()
        total = total.reshape(1)  # () -> (1,)
        _average([total], None)  # the whole batch's loss, for the log
        return total.reshape(())  # back to a scalar

    def clip_gradients(self, model: nn.Module, max_norm: float) -> Tensor:
        return self.fsdp.clip_gradients(max_norm)

    def checkpoint_state(self, model, optimizer):
        return _State(self.fsdp.full_state_dict()), _State(self.fsdp.full_optimizer_state_dict(optimizer))

    def load_checkpoint(self, payload, model, optimizer, name="checkpoint") -> int:
        _check_optimizer_state(payload["optimizer"], len(list(self.fsdp.parameters())), name)
        self.fsdp.load_full_state_dict(payload["model"])
        self.fsdp.load_full_optimizer_state_dict(optimizer, payload["optimizer"])
        restore_rng_state(payload["rng"])
        return int(payload["iteration"])


class TensorParallelStrategy(_MeshStrategy):
    def __init__(self, size: int):
        self.model_size = size

    def wrap_model(self, model: nn.Module) -> nn.Module:
        broadcast_from_rank0(model)  # every data-parallel replica starts from the same weights
        self.tp = TensorParallel(model, self.model_group)
        return self.tp

    def loss_fn(self, model: nn.Module, standard: LossFn) -> LossFn:
        return lambda x, y: self.tp.loss(self.tp(x), y)  # vocab-parallel: no full logits

    def forward_backward(self, loss_fn: LossFn, micro_batches: Sequence[MicroBatch]) -> Tensor:
        total = super().forward_backward(loss_fn, micro_batches)
        return self._sync_data_parallel(list(self.tp.parameters()), total)

    def clip_gradients(self, model: nn.Module, max_norm: float) -> Tensor:
        split = {id(p) for n, p in self.tp.model.named_parameters() if n in self.tp.split_dims}
        params = list(self.tp.parameters())
        squared = _squares([p for p in params if id(p) in split])
        dist.all_reduce(squared, group=self.model_group)  # the slices of each split weight
        squared = squared + _squares([p for p in params if id(p) not in split])  # whole on every rank
        return _clip(params, squared, max_norm)

    def checkpoint_state(self, model, optimizer):
        return _State(self.tp.full_state_dict()), _State(self.tp.full_optimizer_state_dict(optimizer))

    def load_checkpoint(self, payload, model, optimizer, name="checkpoint") -> int:
        _check_optimizer_state(payload["optimizer"], len(list(self.tp.parameters())), name)
        self.tp.load_full_state_dict(payload["model"])
        self.tp.load_full_optimizer_state_dict(optimizer, payload["optimizer"])
        restore_rng_state(payload["rng"])
        return int(payload["iteration"])


class PipelineStrategy(_MeshStrategy):
    def __init__(self, stages: int, schedule: str = "1f1b"):
        self.model_size, self.schedule = stages, schedule

    def wrap_model(self, model: nn.Module) -> nn.Module:
        broadcast_from_rank0(model)
        self.pipeline = PipelineParallel(model, schedule=self.schedule, group=self.model_group)
        stage = self.pipeline.module
        # The other stages' layers are not this rank's business: free them.
        for i in range(len(model.layers)):
            if str(i) not in stage.layers:
                model.layers[i] = nn.Identity()
        return stage

    def loss_fn(self, model: nn.Module, standard: LossFn) -> LossFn:
        # Evaluation: the pipeline forward only (training goes through forward_backward).
        return lambda x, y: torch.tensor(self.pipeline.forward_loss([(x, y)], cross_entropy), device=x.device)

    def forward_backward(self, loss_fn: LossFn, micro_batches: Sequence[MicroBatch]) -> Tensor:
        stats = self.pipeline.run(list(micro_batches), cross_entropy)
        self.last_stats = stats
        loss = torch.tensor(stats.loss, device=micro_batches[0][0].device)
        return self._sync_data_parallel(list(self.pipeline.parameters()), loss)

    def clip_gradients(self, model: nn.Module, max_norm: float) -> Tensor:
        params = list(self.pipeline.parameters())
        squared = _squares(params)
        dist.all_reduce(squared, group=self.model_group)  # every stage's weights
        return _clip(params, squared, max_norm)

    def checkpoint_state(self, model, optimizer):
        model_state, optimizer_state = self.pipeline.full_state(optimizer)
        return _State(model_state), _State(optimizer_state)

    def load_checkpoint(self, payload, model, optimizer, name="checkpoint") -> int:
        _check_optimizer_state(payload["optimizer"], len(self.pipeline.param_names), name)
        self.pipeline.load_full_state(payload["model"], optimizer, payload["optimizer"])
        restore_rng_state(payload["rng"])
        return int(payload["iteration"])
