"""Pipeline parallelism: the layer stack cut into stages, micro-batches flowing through them.

Huang et al., "GPipe" (2019); Narayanan et al., "PipeDream" / "Efficient Large-Scale Language
Model Training on GPU Clusters Using Megatron-LM" (2021) for 1F1B; the course's lecture on
parallelism. With p stages (one per rank of the group), stage s holds layers [s*L/p, (s+1)*L/p);
the first also holds the embedding, the last the final norm, the output head and the loss.

The batch is cut into m micro-batches. A stage's forward of micro-batch i needs the previous
stage's output (received with a point-to-point ``recv``); its backward needs the next stage's
gradient with respect to that output. Two orders of work per stage:

* **GPipe**: all m forwards, then all m backwards (in reverse). Simple; every stage keeps the
  activations of all m micro-batches until its backwards start.
* **1F1B**: p-s-1 warm-up forwards, then alternate one forward and one backward, then the remaining
  backwards. The same bubble, but at most p-s micro-batches are alive on stage s (memory ~ p, not m).

With a forward costing F and a backward B per micro-batch on every stage, both finish in
(m + p - 1)(F + B), of which each stage works m(F + B): the idle **bubble** fraction is

    bubble = (p - 1) / (m + p - 1)            (more micro-batches: smaller bubble)

Each step reports two measurements of it: ``bubble_wall`` from wall-clock time (busy compute time
per stage against the step's length; noisy on a shared CPU), and ``bubble_schedule``: the
critical path of the orders the stages actually executed, replayed with unit costs F = 1, B = 2
(what the formula describes, free of timing noise).

Simplifications: an even split of whole layers (num_layers must divide by p); tied input/output
embeddings are refused when they would sit on different stages; all micro-batches have the same
shape; the loss is the mean cross-entropy, so the step's loss is the mean of the micro-batch losses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from jaxtyping import Float, Int
from torch import Tensor, nn

from basics.model import TransformerLM
from systems.distributed import group_rank_and_size

__all__ = [
    "PipelineStage",
    "PipelineParallel",
    "StepStats",
    "gpipe_order",
    "one_f_one_b_order",
    "schedule_bubble",
    "SCHEDULES",
]

Op = tuple[str, int]  # ("F", i) or ("B", i): forward or backward of micro-batch i
LossFn = Callable[[Tensor, Tensor], Tensor]  # (logits, targets) -> mean loss


def gpipe_order(stage: int, num_stages: int, num_microbatches: int) -> list[Op]:
    """All forwards, then all backwards (last micro-batch first, as its gradient arrives first)."""
    return [("F", i) for i in range(num_microbatches)] + [("B", i) for i in reversed(range(num_microbatches))]


def one_f_one_b_order(stage: int, num_stages: int, num_microbatches: int) -> list[Op]:
    """Warm-up forwards, then one forward / one backward in turn, then the remaining backwards."""
    # Stage s runs (num_stages - 1 - s) forwards ahead, enough to keep the later stages fed; from
    # then on each backward frees a micro-batch's activations before the next forward stores more,
    # so a stage holds at most num_stages - s of them (GPipe: all num_microbatches).
    warmup = min(num_stages - stage - 1, num_microbatches)
    order: list[Op] = [("F", i) for i in range(warmup)]
    forward, backward = warmup, 0
    while backward < num_microbatches:
        if forward < num_microbatches:
            order.append(("F", forward))
            forward += 1
        order.append(("B", backward))
        backward += 1
    return order


SCHEDULES: dict[str, Callable[[int, int, int], list[Op]]] = {"gpipe": gpipe_order, "1f1b": one_f_one_b_order}


def schedule_bubble(orders: list[list[Op]], forward_cost: float = 1.0, backward_cost: float = 2.0) -> float:
    """Idle fraction of the schedule the stages executed (``orders[s]`` is stage s's sequence of
    ops), replayed with fixed costs: each op starts when its stage is free and its input exists
    (F_i on stage s needs F_i on s-1; B_i needs B_i on s+1, or F_i on the last stage)."""
    num_stages = len(orders)
    done: dict[tuple[str, int, int], float] = {}  # (kind, micro-batch, stage) -> finish time
    position, clock = [0] * num_stages, [0.0] * num_stages
    busy = [0.0] * num_stages
    remaining = sum(len(order) for order in orders)
    while remaining:
        progressed = False
        for s, order in enumerate(orders):
            if position[s] == len(order):
                continue
            kind, i = order[position[s]]
            need = (
                (("F", i, s - 1) if s > 0 else None)
                if kind == "F"
                else (("B", i, s + 1) if s < num_stages - 1 else ("F", i, s))
            )
            if need is not None and need not in done:
                continue
            cost = forward_cost if kind == "F" else backward_cost
            start = max(clock[s], done[need] if need is not None else 0.0)  # stage free and input there
            clock[s] = done[(kind, i, s)] = start + cost
            busy[s] += cost
            position[s] += 1
            remaining -= 1
            progressed = True
        if not progressed:
            raise ValueError("the stages' orders deadlock (an op waits for one that never runs)")
    total = max(clock)
    return 1.0 - sum(busy) / (num_stages * total)  # idle share of num_stages x total stage-seconds


class PipelineStage(nn.Module):
    """Stage ``stage`` of ``num_stages`` of a :class:`TransformerLM`: its layers (under their
    original names, ``layers.4...``), plus the embeddings on the first stage and the final norm and
    output head on the last."""

    def __init__(self, model: TransformerLM, stage: int, num_stages: int):
        super().__init__()
        num_layers = len(model.layers)
        if num_layers % num_stages:
            raise ValueError(f"num_layers ({num_layers}) must divide by the number of stages ({num_stages})")
        if num_stages > 1 and model.lm_head.weight is model.token_embeddings.weight:
            raise ValueError("tied embeddings would sit on the first and the last stage: not supported")
        self.stage, self.num_stages = stage, num_stages
        self.is_first, self.is_last = stage == 0, stage == num_stages - 1
        per_stage = num_layers // num_stages
        self.first_layer = stage * per_stage
        self.layers = nn.ModuleDict(
            {str(i): model.layers[i] for i in range(self.first_layer, self.first_layer + per_stage)}
        )
        if self.is_first:
            self.token_embeddings = model.token_embeddings
            self.position_embeddings = model.position_embeddings
            self.dropout = model.dropout
        if self.is_last:
            self.ln_final, self.lm_head = model.ln_final, model.lm_head
        self.context_length = model.config.context_length

    def forward(self, x: Int[Tensor, "batch seq"] | Float[Tensor, "batch seq d_model"]) -> Tensor:
        if self.is_first:  # the same steps as TransformerLM.forward, split at layer boundaries
            if x.shape[-1] > self.context_length:
                raise ValueError(
                    f"sequence of {x.shape[-1]} tokens exceeds context_length {self.context_length}"
                )
            tokens = x
            x = self.token_embeddings(tokens)  # (batch, seq, d_model)
            if self.position_embeddings is not None:
                x = x + self.position_embeddings(torch.arange(tokens.shape[-1], device=tokens.device))
            x = self.dropout(x)
        for layer in self.layers.values():
            x = layer(x)
        if self.is_last:
            return self.lm_head(self.ln_final(x))  # (batch, seq, vocab)
        return x  # (batch, seq, d_model): sent to the next stage


@dataclass
class StepStats:
    """What one pipelined step measured (``loss`` is the same on every rank)."""

    loss: float  # mean loss over the micro-batches
    order: list[Op]  # the ops this stage ran, in order
    busy_s: float  # this stage's compute time
    step_s: float  # the step's wall time (slowest stage, from a common start)
    bubble_wall: float  # 1 - busy_s / step_s on this stage
    sends: int = 0  # point-to-point sends issued by this stage
    peak_alive: int = 0  # most micro-batches whose activations this stage held at once
    extra: dict = field(default_factory=dict)


class PipelineParallel:
    """Run one stage of a pipeline on this rank (stage = rank in ``group``); see the module docstring.

    ``train_step(inputs, targets, loss_fn)`` splits the batch into ``num_microbatches`` and calls
    :meth:`run`, which runs the schedule over a list of ``(inputs, targets)`` micro-batches, leaves
    the gradients of this stage's parameters in ``.grad`` (of the mean loss over all micro-batches)
    and returns :class:`StepStats`. Every rank passes the same micro-batches (the first stage reads
    the inputs, the last the targets). :meth:`forward_loss` is the same pipeline without backward."""

    def __init__(self, model: TransformerLM, num_microbatches: int = 1, schedule: str = "1f1b", group=None):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")
        if num_microbatches < 1:
            raise ValueError(f"num_microbatches must be >= 1; got {num_microbatches}")
        self.group = group
        self.stage, self.num_stages = group_rank_and_size(group)
        self.param_names = [name for name, _ in model.named_parameters()]  # the whole model's order
        self.module = PipelineStage(model, self.stage, self.num_stages)
        self.num_microbatches, self.schedule = num_microbatches, schedule
        self.d_model = model.config.d_model

    def parameters(self):
        return self.module.parameters()

    def _peer(self, stage: int) -> int:
        return dist.get_global_rank(self.group, stage) if self.group is not None else stage

    def train_step(self, inputs: Tensor, targets: Tensor, loss_fn: LossFn) -> StepStats:
        m = self.num_microbatches
        if inputs.shape[0] % m:
            raise ValueError(f"batch of {inputs.shape[0]} does not split into {m} micro-batches")
        return self.run(list(zip(inputs.chunk(m), targets.chunk(m))), loss_fn)

    def run(self, micro_batches: list[tuple[Tensor, Tensor]], loss_fn: LossFn) -> StepStats:
        """Forward and backward of every micro-batch in this stage's order of the schedule."""
        m = len(micro_batches)
        order = SCHEDULES[self.schedule](self.stage, self.num_stages, m)
        alive: dict[int, tuple[Tensor, Tensor]] = {}  # micro-batch -> (stage input, output or loss)
        sends: list = []
        busy, loss_sum, peak_alive = 0.0, 0.0, 0
        start = self._common_start()
        for kind, i in order:
            began = None
            if kind == "F":
                x = self._stage_input(micro_batches[i][0])
                began = time.perf_counter()
                out = self.module(x)
                if self.module.is_last:
                    out = loss_fn(out, micro_batches[i][1]) / m  # / m: the gradients sum to the mean's
                    loss_sum += out.item()
                else:
                    sends.append(self._send(out.detach(), self.stage + 1))  # async: compute goes on
                alive[i] = (x, out)  # kept until this micro-batch's backward: the activation memory
                peak_alive = max(peak_alive, len(alive))
            else:
                x, out = alive.pop(i)
                # dL/d(output) from the next stage (the last stage starts from its loss).
                grad = None if self.module.is_last else self._recv(out.shape, out.dtype, self.stage + 1)
                began = time.perf_counter()
                out.backward(grad)  # parameter gradients accumulate over the micro-batches
                if not self.module.is_first:
                    sends.append(self._send(x.grad, self.stage - 1))  # dL/d(input) to the previous stage
            busy += time.perf_counter() - began
        for work in sends:
            work.wait()
        loss, step_s = self._share(loss_sum, time.perf_counter() - start)
        return StepStats(loss, order, busy, step_s, 1.0 - busy / step_s, len(sends), peak_alive)

    @torch.no_grad()
    def forward_loss(self, micro_batches: list[tuple[Tensor, Tensor]], loss_fn: LossFn) -> float:
        """Mean loss over the micro-batches, forward only (evaluation); the same on every rank."""
        sends, loss_sum = [], 0.0
        for x, y in micro_batches:
            out = self.module(self._stage_input(x))
            if self.module.is_last:
                loss_sum += loss_fn(out, y).item() / len(micro_batches)
            else:
                sends.append(self._send(out, self.stage + 1))
        for work in sends:
            work.wait()
        return self._share(loss_sum, 0.0)[0]

    def _common_start(self) -> float:
        if self.num_stages > 1:
            dist.barrier(group=self.group)  # a common start for the wall-clock bubble
        return time.perf_counter()

    def _stage_input(self, tokens: Tensor) -> Tensor:
        """The first stage's input is the micro-batch; the others receive the previous stage's output."""
        if self.module.is_first:
            return tokens
        dtype = next(self.module.parameters()).dtype
        return self._recv((*tokens.shape, self.d_model), dtype, self.stage - 1)

    def _send(self, tensor: Tensor, stage: int):
        return dist.isend(tensor.contiguous(), self._peer(stage), self.group)

    def _recv(self, shape, dtype, stage: int) -> Tensor:
        buffer = torch.empty(shape, dtype=dtype, device=next(self.module.parameters()).device)
        dist.recv(buffer, self._peer(stage), self.group)
        # An activation from the previous stage needs its gradient, which is sent back.
        return buffer.requires_grad_(stage < self.stage and torch.is_grad_enabled())

    def _share(self, loss_sum: float, elapsed: float) -> tuple[float, float]:
        """One small all-reduce: the loss (only the last stage has it) and the slowest stage's time."""
        if self.num_stages == 1:
            return loss_sum, elapsed
        # MAX over ranks: -inf from every stage but the last picks its loss; the time is the slowest's.
        own_loss = loss_sum if self.module.is_last else float("-inf")
        summary = torch.tensor([own_loss, elapsed], dtype=torch.float64)
        dist.all_reduce(summary, op=dist.ReduceOp.MAX, group=self.group)
        return float(summary[0]), float(summary[1])

    # -- the whole model's state, for checkpoints that any layout can load ----------------------
    def full_state(self, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
        """The unsplit model's state dict and the state dict of the same optimizer on it (by the
        whole model's parameter order), assembled from every stage. Collective; all ranks get them."""
        names = {id(p): n for n, p in self.module.named_parameters()}
        own_model = {n: t.detach().cpu() for n, t in self.module.state_dict().items()}
        state_dict = optimizer.state_dict()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        own_optimizer = {
            names[id(p)]: {
                k: v.cpu() if isinstance(v, Tensor) else v for k, v in state_dict["state"][i].items()
            }
            for i, p in enumerate(params)
            if i in state_dict["state"]
        }
        stages = [(own_model, own_optimizer)]
        if self.num_stages > 1:
            stages = [None] * self.num_stages
            dist.all_gather_object(stages, (own_model, own_optimizer), group=self.group)
        model_state = {k: v for stage_model, _ in stages for k, v in stage_model.items()}
        by_name = {k: v for _, stage_optimizer in stages for k, v in stage_optimizer.items()}
        full = {i: by_name[name] for i, name in enumerate(self.param_names) if name in by_name}
        group = dict(state_dict["param_groups"][0], params=list(range(len(self.param_names))))
        return model_state, {"state": full, "param_groups": [group]}

    def load_full_state(
        self, model_state: dict, optimizer: torch.optim.Optimizer, optimizer_state: dict
    ) -> None:
        """Load the unsplit model's state (and its optimizer's): this stage keeps its own part."""
        own = self.module.state_dict()
        missing = sorted(own.keys() - model_state.keys())
        if missing:
            raise ValueError(f"the checkpoint lacks this stage's weights: {missing[:3]} ...")
        self.module.load_state_dict({name: model_state[name] for name in own})
        by_name = {self.param_names[i]: state for i, state in optimizer_state["state"].items()}
        names = {id(p): n for n, p in self.module.named_parameters()}
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if by_name and any(names[id(p)] not in by_name for p in params):
            raise ValueError(
                "the checkpoint's optimizer state covers only part of the model (was it saved by a sharded "
                "optimizer on several ranks?); resume it with the layout that wrote it"
            )
        local = {i: by_name[names[id(p)]] for i, p in enumerate(params) if names[id(p)] in by_name}
        group = dict(optimizer_state["param_groups"][0], params=list(range(len(params))))
        optimizer.load_state_dict({"state": local, "param_groups": [group]})
