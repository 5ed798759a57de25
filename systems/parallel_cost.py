"""What each parallel strategy costs per rank: communication and memory, as formulas and as measurements.

The course's question "what does each strategy cost?" has a short answer per strategy. With P
parameters (P_mat in weight matrices, P_vec in norm gains), w ranks, fp32 weights (4 bytes) and
AdamW (two fp32 moments), T tokens per rank per step, d = d_model, L layers, c bytes per element of
the compute dtype, and ring collectives (an all-reduce moves 2(w-1)/w of its buffer per rank, an
all-gather or a reduce-scatter (w-1)/w of the full buffer):

==================  ==============================================  ============================
strategy            bytes sent per rank per step                    weights+grads+AdamW per rank
==================  ==============================================  ============================
DDP                 2(w-1)/w * 4P               (grad all-reduce)   16 P
FSDP (ours)         (w-1)/w * [c P_mat (fwd gather)                 16 P_mat / w + 16 P_vec
                    + c (P_mat - P_emb) (bwd gather)
                    + 4 P_mat (grad reduce-scatter)]
                    + 2(w-1)/w * 4 P_vec
tensor parallel     (4L + 2) * 2(t-1)/t * 4 T d  (activations)      16 P_mat / t + 16 P_vec
pipeline parallel   4 T d per boundary it sends across (activations  ~16 P / p
                    forward or their gradients backward)
==================  ==============================================  ============================

DDP and FSDP move weights (or gradients): their cost grows with the model and not with the batch.
Tensor and pipeline parallelism move activations: their cost grows with the batch and not with the
model's size, which is why TP stays inside a node (4L + 2 all-reduces a step, on the critical path)
and PP crosses nodes (one activation per micro-batch and boundary, but a bubble of
(p - 1)/(m + p - 1) of the time idle).

Measurements (same definitions, whatever code issues the collectives):

* :class:`CommunicationMeter`: a dispatch mode that sees every collective, whether called through
  ``torch.distributed`` or through functional collectives (DTensor), and adds up the bytes each
  rank sends under the ring model above;
* :class:`PeakMemory`: peak bytes of live tensors -- ``torch.cuda.max_memory_allocated`` on a GPU;
  on the CPU a dispatch mode that watches every storage created inside it (a storage shrunk with
  ``resize_(0)``, as torch's FSDP frees its gathered weights, counts at its current size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

from basics.model import ModelConfig

__all__ = ["CommunicationMeter", "PeakMemory", "Costs", "strategy_costs"]

# Collective op name (dispatcher) -> what the ring model charges per rank, as a function of the
# largest tensor argument S and the group size w. Functional collectives pass the input only.
_RING = {
    # torch.distributed (c10d) ops
    "allreduce_": lambda s, w: 2 * (w - 1) / w * s,
    "_allgather_base_": lambda s, w: (w - 1) / w * s,  # S = the gathered (full) output
    "allgather_": lambda s, w: (w - 1) * s,  # list form: S = one rank's piece
    "_reduce_scatter_base_": lambda s, w: (w - 1) / w * s,  # S = the full input
    "broadcast_": lambda s, w: (w - 1) / w * s,
    "send": lambda s, w: s,
    "recv_": lambda s, w: 0.0,  # the sender pays
    # functional collectives (DTensor)
    "all_reduce": lambda s, w: 2 * (w - 1) / w * s,
    "all_gather_into_tensor": lambda s, w: (w - 1) * s,  # S = this rank's input piece
    "reduce_scatter_tensor": lambda s, w: (w - 1) / w * s,
}


class CommunicationMeter(TorchDispatchMode):
    """Counts collectives and the bytes this rank sends (ring model) while active::

    with CommunicationMeter(group_size=2) as meter:
        train_step()
    meter.sent_bytes, meter.calls       # e.g. 1.2e7, {"allreduce_": 9}
    """

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size
        self.sent_bytes = 0.0
        self.calls: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name.split("::")[-1]
        if func.namespace in ("c10d", "_c10d_functional") and name in _RING:
            tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            size = max((t.numel() * t.element_size() for t in tensors), default=0)
            self.sent_bytes += _RING[name](size, self.group_size)
            self.calls[name] = self.calls.get(name, 0) + 1
        return func(*args, **kwargs)


class _LiveStorages(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.storages = WeakIdKeyDictionary()
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                self.storages[tensor.untyped_storage()] = True
        self.peak = max(self.peak, sum(s.nbytes() for s in list(self.storages.keys())))
        return out


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.bytes``: the most tensor memory alive at
    once among what was allocated inside the block (build the model inside to count it too)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.bytes = device, 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._mode = _LiveStorages().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._mode.__exit__(*exc)
            self.bytes = self._mode.peak


@dataclass(frozen=True)
class Costs:
    """The formulas' answer for one strategy (bytes per rank per step)."""

    sent_bytes: float  # communication this rank sends (ring model)
    state_bytes: float  # weights + gradients + AdamW moments this rank keeps (activations excluded)


def _matrix_counts(config: ModelConfig) -> tuple[int, int, int]:
    """(parameters in weight matrices, in the token embedding, in vectors) of the TransformerLM."""
    total = config.num_parameters()
    norms = {"rmsnorm": 1, "layernorm": 2, "none": 0}[config.norm]
    vectors = norms * config.d_model * (2 * config.num_layers + (config.norm_position == "pre"))
    return total - vectors, config.vocab_size * config.d_model, vectors


def strategy_costs(
    strategy: str,
    config: ModelConfig,
    world_size: int,
    tokens_per_rank: int,
    compute_bytes: int = 4,
) -> Costs:
    """Per-rank communication and state of ``strategy`` (ddp | fsdp | tp | pp) on ``world_size`` ranks
    for a :class:`basics.model.ModelConfig`; see the module docstring for the formulas."""
    w, d, layers = world_size, config.d_model, config.num_layers
    p_mat, p_emb, p_vec = _matrix_counts(config)
    total = p_mat + p_vec
    ring = (w - 1) / w
    if strategy == "ddp":
        return Costs(2 * ring * 4 * total, 16 * total)
    if strategy == "fsdp":
        gathers = compute_bytes * p_mat + compute_bytes * (p_mat - p_emb)
        sent = ring * (gathers + 4 * p_mat) + 2 * ring * 4 * p_vec
        return Costs(sent, 16 * p_mat / w + 16 * p_vec)
    if strategy == "tp":
        activation = 4 * tokens_per_rank * d
        return Costs((4 * layers + 2) * 2 * ring * activation, 16 * p_mat / w + 16 * p_vec)
    if strategy == "pp":  # an end stage sends across one boundary, a middle stage across two
        return Costs(4 * tokens_per_rank * d * (2 if w > 2 else 1), 16 * total / w)
    raise ValueError(f"unknown strategy {strategy!r}; choose from ddp, fsdp, tp, pp")
