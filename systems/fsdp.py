"""Fully sharded data parallelism (FSDP, ZeRO stage 3): every rank stores 1/world of the weights.

Course handout (CS336 assignment 2, 2026 release), "Fully sharded data parallel"; Rajbhandari et al.,
"ZeRO" (2020), stage 3 (P_os+g+p); Zhao et al., "PyTorch FSDP" (VLDB 2023).

Data parallelism (``systems.ddp``) keeps a full copy of the weights, gradients and AdamW moments on
every rank: 16 bytes per parameter in fp32, whatever the number of ranks. FSDP cuts each weight of a
``Linear`` or ``Embedding`` into ``world`` equal slices; rank r keeps slice r only, together with its
gradient and optimizer state. A weight exists in full only while a layer uses it::

    forward of a layer:   W = all_gather(shards)       use W        free W
    backward of a layer:  W = all_gather(shards)       dX = dY W    free W
                          dW_r = reduce_scatter(dW) / world   (this rank's slice of the mean gradient)
    optimizer step:       on the shards only (fp32 master weights, fp32 AdamW state)

Weight bytes per rank fall from P to P/world (+ the few layers gathered at a time), at the price of
one more all-gather per step than DDP: DDP's all-reduce moves 2(w-1)/w * P bytes per rank, FSDP's
two all-gathers and one reduce-scatter move 3(w-1)/w * P.

Parameters of other modules (norm gains, biases) are small: they stay replicated and their gradients
are all-reduced, as in DDP. ``compute_dtype`` (bf16/fp16) casts each shard before the gather (half
the bytes on the wire) and the replicated parameters before use, so the whole forward and backward
run in that dtype (modules that upcast internally, like RMSNorm, still do); gradients are
reduce-scattered in ``reduce_dtype`` (fp32 by default, for accuracy) and the optimizer updates fp32
master shards and replicas.

Overlap: with ``prefetch=True`` the all-gather of the *next* layer's weight is launched (async)
before the current layer computes, so communication hides behind compute; the next layer is the
one that followed in the previous step (forward) and in the previous backward (backward), the
first step guessing module order. At most two gathered weights are alive at a time.

Each sharded weight is one flat shard (per-parameter sharding: the weight is flattened, zero-padded
to a multiple of ``world``, and cut into equal pieces). The wrapped model keeps every parameter
name: ``layers.0.attn.q_proj.weight`` is now this rank's 1-D slice of that weight, so an optimizer
built on ``fsdp.parameters()`` holds state for shards only. The same training loop as DDP::

    fsdp = FSDP(model, compute_dtype=torch.bfloat16)
    optimizer = AdamW(fsdp.parameters(), lr=1e-3)
    loss = cross_entropy(fsdp(x_local), y_local); loss.backward()
    fsdp.finish_gradient_synchronization()        # shard grads = this rank's slice of the mean grad
    optimizer.step(); optimizer.zero_grad()
    state = fsdp.full_state_dict()                # full fp32 weights, on every rank (for saving)

Simplifications: per-parameter units instead of torch's flat parameter per block; the module is
built in full on every rank first (no meta-device init); a shared (tied) weight is gathered and
reduced once per use; activation checkpointing (re-running forward inside backward) is not
supported; gradient accumulation needs no ``no_sync`` (every backward reduce-scatters, the shard
gradients accumulate).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from basics.model import Embedding, Linear
from systems.distributed import broadcast_from_rank0, group_rank_and_size

__all__ = ["FSDP", "FlatShard", "SHARDED_MODULES", "all_gather_into", "reduce_scatter_into"]

# Modules whose `weight` is sharded: the course's own and torch's.
SHARDED_MODULES = (Linear, Embedding, nn.Linear, nn.Embedding)


def all_gather_into(output: Tensor, shard: Tensor, group=None, async_op: bool = False):
    """Concatenate every rank's equal-sized ``shard`` into ``output`` (torch >= 2.13 renamed the op)."""
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    return gather(output, shard, group=group, async_op=async_op)


def reduce_scatter_into(output: Tensor, full: Tensor, group=None, async_op: bool = False):
    """Sum ``full`` over the ranks and keep this rank's equal slice of the sum in ``output``."""
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    return scatter(output, full, op=dist.ReduceOp.SUM, group=group, async_op=async_op)


@dataclass(eq=False)
class FlatShard:
    """One sharded weight: this rank's slice of the flattened, zero-padded full tensor."""

    name: str  # the weight's name in the wrapped module (the first, if it is shared)
    shape: torch.Size  # the full weight's shape
    shard: nn.Parameter  # (padded_numel / world,) this rank's slice; the optimizer updates it
    world_size: int  # number of slices

    @property
    def numel(self) -> int:
        return self.shape.numel()

    @property
    def padded_numel(self) -> int:
        return self.shard.numel() * self.world_size

    def slice_of(self, full: Tensor, rank: int) -> Tensor:
        """Rank ``rank``'s slice of a full tensor of this weight's shape (zero padding at the end)."""
        flat = full.detach().reshape(-1)  # (numel,): row-major, as all_gather will lay it out again
        flat = F.pad(flat, (0, self.padded_numel - self.numel))  # (padded_numel,) = world equal slices
        size = self.shard.numel()
        # E.g. numel 10, world 4: padded to 12, rank r holds [3r, 3r+3); rank 3 holds 9 and two zeros.
        return flat[rank * size : (rank + 1) * size]


class _Communicator:
    """The all-gathers of sharded weights (one ahead of use) and the reduce-scatters of their
    gradients. ``FSDP.finish_gradient_synchronization`` drains it once per step."""

    def __init__(self, group, compute_dtype: torch.dtype | None, reduce_dtype: torch.dtype, prefetch: bool):
        self.group = group
        self.rank, self.world_size = group_rank_and_size(group)
        self.compute_dtype, self.reduce_dtype, self.prefetch = compute_dtype, reduce_dtype, prefetch
        self.order: list[FlatShard] = []  # which weight each forward position used in the last forward
        self.regathered: list[bool] = []  # whether that position gathers its weight again in backward
        self.position = 0  # next forward position of the running forward
        self.backward_next: dict[int, int] = {}  # forward position -> the one whose backward came next
        self.last_backward: int | None = None
        self.inflight: dict[int, tuple[Any, Tensor, Tensor]] = {}  # id(unit) -> (work, output, input)
        self.used: set[int] = set()  # units gathered so far in this forward or backward pass
        self.pending: list[tuple[FlatShard, Any, Tensor, Tensor]] = []  # reduce-scatters in flight
        self.gathers = 0  # all-gathers launched (a counter for the tests and benchmarks)

    def dtype_of(self, unit: FlatShard) -> torch.dtype:
        return self.compute_dtype or unit.shard.dtype

    # -- all-gather ---------------------------------------------------------------------------
    def begin_forward(self) -> None:
        self.position, self.last_backward = 0, None
        self.used.clear()

    def enter_forward(self, unit: FlatShard, gathers_in_backward: bool) -> int:
        """Record that forward position ``self.position`` uses ``unit``; return that position."""
        position = self.position
        self.position += 1
        if position < len(self.order):
            self.order[position], self.regathered[position] = unit, gathers_in_backward
        else:
            self.order.append(unit)
            self.regathered.append(gathers_in_backward)
        return position

    def launch(self, unit: FlatShard, ahead: bool = False) -> None:
        if id(unit) in self.inflight or self.world_size == 1:
            return
        if ahead and id(unit) in self.used:  # a wrong guess: used already in this pass
            return
        send = unit.shard.detach().to(self.dtype_of(unit))  # cast first: fewer bytes on the wire
        # (padded_numel,): rank r's slice lands at [r * size, (r + 1) * size)
        out = send.new_empty(unit.padded_numel)
        work = all_gather_into(out, send, self.group, async_op=True)
        # Keep `send` referenced too: the async collective reads it until work.wait().
        self.inflight[id(unit)] = (work, out, send)
        self.gathers += 1

    def fetch(self, unit: FlatShard) -> Tensor:
        """The full weight (compute dtype); the caller drops it after use, which frees it."""
        if self.world_size == 1:  # the shard is the whole (padded) weight: nothing to gather
            return unit.shard.detach().to(self.dtype_of(unit))[: unit.numel].view(unit.shape)
        self.launch(unit)  # no-op when it was prefetched
        self.used.add(id(unit))  # a later prefetch of it in this pass would be a wrong guess
        work, out, _ = self.inflight.pop(id(unit))  # popped: only the caller holds the full weight now
        work.wait()
        return out[: unit.numel].view(unit.shape)  # drop the padding, then (padded,) -> the weight's shape

    def prefetch_forward(self, position: int) -> None:
        # The weight the next forward position used last step: gather it while this layer computes.
        if self.prefetch and position + 1 < len(self.order):
            self.launch(self.order[position + 1], ahead=True)

    def enter_backward(self, position: int) -> None:
        """Record that the backward of forward position ``position`` runs now (after the last one)."""
        if self.last_backward is None:
            self.used.clear()  # a new backward pass
        else:
            self.backward_next[self.last_backward] = position
        self.last_backward = position

    def prefetch_backward(self, position: int) -> None:
        """Launch the gather of the weight whose backward came after ``position``'s last time
        (first step: the nearest earlier position that gathers in backward)."""
        following = self.backward_next.get(position)
        if following is None:
            earlier = [p for p in range(position) if self.regathered[p]]
            following = earlier[-1] if earlier else -1
        if self.prefetch and 0 <= following < len(self.order):
            self.launch(self.order[following], ahead=True)

    # -- reduce-scatter -----------------------------------------------------------------------
    def reduce_scatter(self, unit: FlatShard, grad: Tensor) -> None:
        """Launch the reduction of one full weight gradient; its slice lands in ``pending``."""
        # Same layout as the shards: flatten, zero-pad, so slice r of the sum is rank r's shard gradient.
        flat = grad.to(self.reduce_dtype).reshape(-1)  # (numel,)
        if unit.padded_numel > unit.numel:
            flat = F.pad(flat, (0, unit.padded_numel - unit.numel))  # (padded_numel,)
        if self.world_size == 1:  # the "sum over ranks" is the gradient itself
            self.pending.append((unit, None, flat, flat))
            return
        out = flat.new_empty(unit.shard.numel())  # (padded_numel / world,)
        work = reduce_scatter_into(out, flat, self.group, async_op=True)  # out = sum_ranks(flat)[slice r]
        self.pending.append((unit, work, out, flat))
        # A reduce-scatter in flight keeps its full-size gradient alive: finish the oldest ones so
        # that only a couple of full gradients exist at a time (overlap without the memory cost).
        while len(self.pending) > self.MAX_PENDING:
            self._accumulate(*self.pending.pop(0))

    MAX_PENDING = 2

    @torch.no_grad()
    def _accumulate(self, unit: FlatShard, work, out: Tensor, flat: Tensor) -> None:
        """Wait for one reduce-scatter; add its slice of the mean gradient to the shard's ``.grad``."""
        if work is not None:
            work.wait()
        # Sum over ranks / world = the mean gradient over the global batch, as DDP's all-reduce gives.
        grad = out.div_(self.world_size).to(unit.shard.dtype)
        # Accumulate, not assign: micro-batches and shared (tied) weights add up as in autograd.
        if unit.shard.grad is None:
            unit.shard.grad = grad
        else:
            unit.shard.grad.add_(grad)

    @torch.no_grad()
    def drain(self) -> None:
        """Finish every reduce-scatter; drop prefetched weights nobody used (waiting first: the
        collective must complete on every rank)."""
        for pending in self.pending:
            self._accumulate(*pending)
        self.pending.clear()
        for work, _, _ in self.inflight.values():
            work.wait()
        self.inflight.clear()


class _ShardedLinearFunction(torch.autograd.Function):
    """y = x W^T with W gathered for the forward, freed, and gathered again for dX = dY W."""

    @staticmethod
    def forward(ctx, x: Tensor, shard: Tensor, unit: FlatShard, comm: _Communicator) -> Tensor:
        position = comm.enter_forward(unit, gathers_in_backward=ctx.needs_input_grad[0])
        weight = comm.fetch(unit)  # (d_out, d_in)
        comm.prefetch_forward(position)
        x_c = x.to(weight.dtype)  # (..., d_in) in the compute dtype
        ctx.save_for_backward(x_c)  # the input, not the weight: W is freed when forward returns
        ctx.unit, ctx.comm, ctx.position, ctx.x_dtype = unit, comm, position, x.dtype
        return x_c @ weight.T  # (..., d_in) @ (d_in, d_out) -> (..., d_out)

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        (x_c,) = ctx.saved_tensors
        unit, comm = ctx.unit, ctx.comm
        grad_y = grad_y.to(x_c.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            comm.enter_backward(ctx.position)
            weight = comm.fetch(unit)
            comm.prefetch_backward(ctx.position)
            grad_x = (grad_y @ weight).to(ctx.x_dtype)  # dX = dY W: (..., d_out) @ (d_out, d_in)
            del weight  # free the gathered weight before the next layer's backward
        if ctx.needs_input_grad[1]:
            d_out, d_in = unit.shape
            # dW = dY^T X summed over every position: (d_out, tokens) @ (tokens, d_in) -> (d_out, d_in)
            grad_w = grad_y.reshape(-1, d_out).T @ x_c.reshape(-1, d_in)
            comm.reduce_scatter(unit, grad_w)
        return grad_x, None, None, None  # the shard's gradient arrives through the reduce-scatter


class _ShardedEmbeddingFunction(torch.autograd.Function):
    """out = W[ids] with W gathered for the forward only: dW needs the ids, not W."""

    @staticmethod
    def forward(ctx, token_ids: Tensor, shard: Tensor, unit: FlatShard, comm: _Communicator) -> Tensor:
        position = comm.enter_forward(unit, gathers_in_backward=False)  # dW needs only the ids
        weight = comm.fetch(unit)  # (num_embeddings, embedding_dim)
        comm.prefetch_forward(position)
        ctx.save_for_backward(token_ids)
        ctx.unit, ctx.comm, ctx.position = unit, comm, position
        return weight[token_ids]  # (..., embedding_dim)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (token_ids,) = ctx.saved_tensors
        unit, comm = ctx.unit, ctx.comm
        if ctx.needs_input_grad[1]:
            num, dim = unit.shape
            # Rows of repeated ids add up; summed in reduce_dtype (fp32) rather than bf16.
            grad_w = grad_out.new_zeros((num, dim), dtype=comm.reduce_dtype)
            # dW[id] += dOut[position] for every position holding id: (tokens,) ids, (tokens, dim) rows.
            grad_w.index_add_(0, token_ids.reshape(-1), grad_out.reshape(-1, dim).to(comm.reduce_dtype))
            comm.reduce_scatter(unit, grad_w)
        return None, None, None, None


class ShardedLinear(nn.Module):
    """Stands in for a ``Linear`` (ours or torch's): ``weight`` is this rank's flat shard; a bias, if
    any, is replicated."""

    def __init__(self, source: nn.Module, unit: FlatShard, comm: _Communicator):
        super().__init__()
        self.weight = unit.shard
        self.bias = getattr(source, "bias", None)
        self.unit, self.comm = unit, comm

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        y = _ShardedLinearFunction.apply(x, self.weight, self.unit, self.comm)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"full_shape={tuple(self.unit.shape)}, shard={self.weight.numel()}"


class ShardedEmbedding(nn.Module):
    """Stands in for an ``Embedding`` (ours or torch's): ``weight`` is this rank's flat shard."""

    def __init__(self, source: nn.Module, unit: FlatShard, comm: _Communicator):
        super().__init__()
        if isinstance(source, nn.Embedding) and (source.max_norm is not None or source.sparse):
            raise ValueError("FSDP: nn.Embedding with max_norm or sparse gradients is not supported")
        self.weight = unit.shard
        self.unit, self.comm = unit, comm

    def forward(self, token_ids: Int[Tensor, "..."]) -> Float[Tensor, "... d_model"]:
        return _ShardedEmbeddingFunction.apply(token_ids, self.weight, self.unit, self.comm)

    def extra_repr(self) -> str:
        return f"full_shape={tuple(self.unit.shape)}, shard={self.weight.numel()}"


class FSDP(nn.Module):
    """Shard the weights of every ``Linear``/``Embedding`` inside ``module`` over the ranks of
    ``group`` (default: all ranks); see the module docstring. Without a process group it runs the
    same code with one shard (world size 1)."""

    def __init__(
        self,
        module: nn.Module,
        compute_dtype: torch.dtype | None = None,
        *,
        reduce_dtype: torch.dtype = torch.float32,
        prefetch: bool = True,
        group=None,
    ):
        super().__init__()
        self.rank, self.world_size = group_rank_and_size(group)
        self.group = group
        if self.world_size > 1:
            broadcast_from_rank0(module, group)
        self.comm = _Communicator(group, compute_dtype, reduce_dtype, prefetch)
        self.module = module
        self.units: list[FlatShard] = []
        self._unit_of: dict[int, FlatShard] = {}  # id(shard parameter) -> its FlatShard
        self._shard_submodules()
        # First-step guess of the forward order: module order.
        self.comm.order = list(self.units)
        self.comm.regathered = [True] * len(self.units)
        shard_ids = {id(unit.shard) for unit in self.units}
        self._replicated_named = [(n, p) for n, p in self.module.named_parameters() if id(p) not in shard_ids]
        self.replicated = [p for _, p in self._replicated_named if p.requires_grad]

    @torch.no_grad()
    def _make_unit(self, name: str, weight: nn.Parameter) -> FlatShard:
        size = -(-weight.numel() // self.world_size)  # ceil: pad so every rank has the same size
        unit = FlatShard(name, weight.shape, nn.Parameter(weight.new_empty(size)), self.world_size)
        unit.shard.copy_(unit.slice_of(weight, self.rank))
        unit.shard.requires_grad_(weight.requires_grad)
        self.units.append(unit)
        self._unit_of[id(unit.shard)] = unit
        return unit

    def _shard_submodules(self) -> None:
        by_weight: dict[int, FlatShard] = {}  # a shared weight becomes one unit
        targets = [(n, m) for n, m in self.module.named_modules() if isinstance(m, SHARDED_MODULES)]
        for name, source in targets:
            weight = source.weight
            if id(weight) not in by_weight:
                by_weight[id(weight)] = self._make_unit(f"{name}.weight" if name else "weight", weight)
            unit = by_weight[id(weight)]
            kind = ShardedEmbedding if isinstance(source, Embedding | nn.Embedding) else ShardedLinear
            replacement = kind(source, unit, self.comm)
            if not name:
                self.module = replacement
                continue
            parent_name, _, child = name.rpartition(".")
            setattr(self.module.get_submodule(parent_name), child, replacement)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.comm.begin_forward()
        if self.comm.compute_dtype is None:
            return self.module(*args, **kwargs)
        # Replicated parameters (norm gains, biases) join the compute dtype too: the module runs
        # with cast copies in their place, and autograd carries their gradients back to fp32.
        cast = {
            name: p.to(self.comm.compute_dtype) for name, p in self._replicated_named if p.is_floating_point()
        }
        return torch.func.functional_call(self.module, cast, args, kwargs)

    @torch.no_grad()
    def finish_gradient_synchronization(self) -> None:
        """After backward, before the optimizer step: shard gradients = slices of the mean gradient,
        replicated gradients all-reduced and averaged (one flat message)."""
        self.comm.drain()
        grads = [p.grad for p in self.replicated if p.grad is not None]
        if self.world_size == 1 or not grads:
            return
        # One all-reduce of all small gradients concatenated: one message instead of one per tensor.
        flat = torch.cat([g.reshape(-1) for g in grads])  # (sum of numels,)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        flat.div_(self.world_size)  # mean over ranks, as for the shards
        offset = 0  # copy each gradient's span back
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    # -- full (unsharded) state, for saving and for loading a single-process checkpoint ----------
    @torch.no_grad()
    def _gather_full(self, unit: FlatShard, shard: Tensor) -> Tensor:
        if self.world_size == 1:
            return shard.detach()[: unit.numel].view(unit.shape).clone()
        out = shard.new_empty(unit.padded_numel)  # (padded_numel,): the ranks' slices in rank order
        all_gather_into(out, shard.detach().contiguous(), self.group)
        return out[: unit.numel].view(unit.shape)  # drop the padding, restore the weight's shape

    def full_state_dict(self) -> dict[str, Tensor]:
        """The unwrapped module's state dict with full weights (master dtype), on every rank.
        Collective: every rank must call it."""
        gathered: dict[int, Tensor] = {}
        state = {}
        for name, tensor in self.module.state_dict(keep_vars=True).items():
            unit = self._unit_of.get(id(tensor))
            if unit is None:
                state[name] = tensor.detach().clone()
                continue
            if id(unit) not in gathered:
                gathered[id(unit)] = self._gather_full(unit, unit.shard)
            state[name] = gathered[id(unit)]
        return state

    @torch.no_grad()
    def load_full_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load an unsharded state dict (e.g. a single-process checkpoint): each rank keeps its slice."""
        own = self.module.state_dict(keep_vars=True)
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or unexpected:
            raise ValueError(
                f"FSDP.load_full_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        for name, tensor in own.items():
            unit = self._unit_of.get(id(tensor))
            value = state[name]
            expected = unit.shape if unit is not None else tensor.shape
            if value.shape != expected:
                raise ValueError(
                    f"FSDP.load_full_state_dict: {name} has shape {tuple(value.shape)}, expected {tuple(expected)}"
                )
            tensor.copy_(unit.slice_of(value, self.rank) if unit is not None else value)

    def _optimizer_params(self, optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
        return [p for group in optimizer.param_groups for p in group["params"]]

    def full_optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``optimizer.state_dict()`` with every per-element state tensor of a shard (AdamW's moments)
        gathered to the full weight's shape: what the same optimizer on the unwrapped module would
        hold. Collective: every rank must call it."""
        state_dict = optimizer.state_dict()
        full_state = {}
        for index, param in enumerate(self._optimizer_params(optimizer)):
            if index not in state_dict["state"]:
                continue
            unit = self._unit_of.get(id(param))
            entry = {}
            for key, value in sorted(state_dict["state"][index].items()):
                if unit is not None and isinstance(value, Tensor) and value.shape == param.shape:
                    value = self._gather_full(unit, value)
                entry[key] = value
            full_state[index] = entry
        return {"state": full_state, "param_groups": state_dict["param_groups"]}

    def load_full_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
        """Load a state dict of the optimizer on the unwrapped module (e.g. from a single-process
        checkpoint or :meth:`full_optimizer_state_dict`): each rank keeps its slices."""
        sliced = {}
        for index, param in enumerate(self._optimizer_params(optimizer)):
            if index not in state_dict["state"]:
                continue
            unit = self._unit_of.get(id(param))
            entry = {}
            for key, value in state_dict["state"][index].items():
                if unit is not None and isinstance(value, Tensor) and value.shape == unit.shape:
                    value = unit.slice_of(value, self.rank).clone()
                entry[key] = value
            sliced[index] = entry
        optimizer.load_state_dict({"state": sliced, "param_groups": state_dict["param_groups"]})

    # -- gradient clipping over the shards ------------------------------------------------------
    @torch.no_grad()
    def clip_gradients(self, max_l2_norm: float, eps: float = 1e-6) -> Tensor:
        """Global-norm clipping (``basics.nn_utils.clip_gradients``; 0 = only measure) over the *full*
        gradient: each shard's squared norm is summed over the ranks, replicated gradients counted
        once. Returns the norm before clipping; no host sync (the scale is clamped, not branched on)."""
        device = self.units[0].shard.device if self.units else None
        # ||g||^2 = sum over ranks of each rank's shard part (the slices are disjoint; padding adds 0)
        squares = [u.shard.grad.float().pow(2).sum() for u in self.units if u.shard.grad is not None]
        shard_sq = torch.stack(squares).sum() if squares else torch.zeros((), device=device)
        if self.world_size > 1:
            dist.all_reduce(shard_sq, group=self.group)
        # + the replicated gradients, identical on every rank after the all-reduce: counted once.
        squares = [p.grad.float().pow(2).sum() for p in self.replicated if p.grad is not None]
        total = (shard_sq + (torch.stack(squares).sum() if squares else 0.0)).sqrt()
        if max_l2_norm > 0:
            # min(1, M / (||g|| + eps)): a no-op under the threshold, computed on the device.
            scale = (max_l2_norm / (total + eps)).clamp(max=1.0)
            for p in self.parameters():
                if p.grad is not None:
                    p.grad.mul_(scale.to(p.grad.dtype))
        return total

    def sharded_parameters(self) -> Iterator[nn.Parameter]:
        """The shards (one per sharded weight)."""
        return (unit.shard for unit in self.units)
