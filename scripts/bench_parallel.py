"""Benchmark our FSDP and tensor parallelism against PyTorch's, with the cost formulas beside them.

Spawns ``--world-size`` ranks (2 gloo CPU ranks by default; ``--backend nccl`` puts rank r on GPU r)
and trains the same TransformerLM with each strategy, ours and PyTorch's in turn, one step each per
round (a burst of load elsewhere hits both alike). Per strategy and rank it reports:

* step time (median over ``--steps``, slowest rank) -- forward, backward, communication, AdamW;
* bytes each rank sends per step, counted by ``systems.parallel_cost.CommunicationMeter`` (every
  collective, ``torch.distributed`` or DTensor's functional ones, under the ring model);
* peak tensor memory per rank over two steps, model and optimizer built inside the measurement
  (``systems.parallel_cost.PeakMemory``: CUDA's allocator statistics, or tracked storages on a CPU).

Pairs: DDP (ours bucketed vs ``torch.nn.parallel.DistributedDataParallel``), FSDP (ours vs
``torch.distributed.fsdp.fully_shard`` on every block and the root), tensor parallelism (ours vs
``torch.distributed.tensor.parallel`` with the same Megatron plan and ``loss_parallel``), and our
pipeline (1F1B, no peer). DDP and FSDP split each global batch over the ranks; TP and PP ranks all
see the whole batch. A second table puts the formulas of ``systems.parallel_cost`` beside the
measurements, a third the pipeline's bubble for 1-16 micro-batches: the formula, the executed
schedule replayed with unit costs, and the wall clock (idle fraction of the idler rank).

    python scripts/bench_parallel.py                       # 2 gloo ranks, a small model (minutes)
    python scripts/bench_parallel.py --backend nccl --d-model 1024 --num-layers 8 --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from basics.cli import ArgumentParser, add_config_arguments, check_positive, config_from_arguments, run_main
from basics.model import Embedding, Linear, ModelConfig, TransformerLM
from systems.ddp import DDPBucketed
from systems.distributed import run_on_local_ranks
from systems.fsdp import FSDP
from systems.parallel_cost import CommunicationMeter, PeakMemory, strategy_costs
from systems.pipeline_parallel import PipelineParallel, schedule_bubble
from systems.tensor_parallel import TensorParallel

MB = 1024 * 1024
STRATEGIES = ("ddp", "fsdp", "tp", "pp")


@dataclass(frozen=True)
class BenchParallelConfig:
    """What to benchmark; every field is a flag."""

    world_size: int = 2  # ranks on this machine
    backend: Literal["gloo", "nccl"] = "gloo"  # gloo (CPU tensors) or nccl (rank r on GPU r)
    threads_per_rank: int = 1  # torch intra-op threads per rank (CPU)
    strategies: tuple[str, ...] = STRATEGIES  # which strategies to run
    vocab_size: int = 4096  # model: vocabulary
    d_model: int = 128  # model width
    num_layers: int = 4  # Transformer blocks
    num_heads: int = 4  # attention heads
    context_length: int = 64  # tokens per sequence
    batch_size: int = 8  # sequences per step (global)
    pp_microbatches: int = 4  # micro-batches of the pipeline
    warmup_steps: int = 2  # untimed steps per variant
    steps: int = 5  # timed steps per variant

    def __post_init__(self) -> None:
        check_positive(self, zero_ok=("warmup_steps",))
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise ValueError(f"unknown --strategies {sorted(unknown)}; choose from {', '.join(STRATEGIES)}")
        if self.batch_size % self.world_size or self.batch_size % self.pp_microbatches:
            raise ValueError("batch_size must divide by world_size and by pp_microbatches")

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(
            vocab_size=self.vocab_size, context_length=self.context_length, d_model=self.d_model,
            num_layers=self.num_layers, num_heads=self.num_heads,
        )  # fmt: skip


# ---- PyTorch's implementations, set up on the same model ----


def _to_torch_modules(module: nn.Module) -> None:
    """Swap our Linear/Embedding for torch's (same weights): torch's TP plans accept only those."""
    for name, child in module.named_children():
        if isinstance(child, Linear):
            linear = nn.Linear(child.in_features, child.out_features, bias=False)
            linear.weight = child.weight
            setattr(module, name, linear)
        elif isinstance(child, Embedding):
            embedding = nn.Embedding(*child.weight.shape)
            embedding.weight = child.weight
            setattr(module, name, embedding)
        else:
            _to_torch_modules(child)


def _torch_tensor_parallel(model: TransformerLM, mesh) -> TransformerLM:
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    _to_torch_modules(model)
    plan = {
        "token_embeddings": RowwiseParallel(input_layouts=Replicate()),  # vocabulary split
        "lm_head": ColwiseParallel(output_layouts=Shard(-1), use_local_output=False),  # for loss_parallel
    }
    for i, block in enumerate(model.layers):
        for name in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "ffn.w1", "ffn.w3"):
            plan[f"layers.{i}.{name}"] = ColwiseParallel()
        for name in ("attn.output_proj", "ffn.w2"):
            plan[f"layers.{i}.{name}"] = RowwiseParallel()
        block.attn.num_heads //= mesh.size()  # each rank runs its own heads
        block.attn.num_kv_heads //= mesh.size()
    return parallelize_module(model, mesh, plan)


def _torch_fsdp(model: TransformerLM, mesh) -> TransformerLM:
    from torch.distributed.fsdp import fully_shard

    for block in model.layers:
        fully_shard(block, mesh=mesh)
    return fully_shard(model, mesh=mesh)


# ---- one training step per variant ----


def _lm_loss(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _pipeline_step(model, config: BenchParallelConfig):
    pipeline = PipelineParallel(model, config.pp_microbatches, "1f1b")
    return (lambda x, y: pipeline.train_step(x, y, _lm_loss)), pipeline.parameters()


def _tensor_parallel_step(model, impl: str, world: int, device):
    if impl == "ours":
        tp = TensorParallel(model)
        return (lambda x, y: tp.loss(tp(x), y).backward()), tp.parameters()
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import loss_parallel

    tp = _torch_tensor_parallel(model, init_device_mesh(device.type, (world,)))

    def forward_backward(x, y):
        with loss_parallel():  # the vocab-parallel loss; its backward must run inside the context
            _lm_loss(tp(x), y).backward()

    return forward_backward, tp.parameters()


def _data_parallel_step(model, strategy: str, impl: str, config: BenchParallelConfig, device, rank: int):
    world = config.world_size
    local = slice(rank * config.batch_size // world, (rank + 1) * config.batch_size // world)
    if strategy == "fsdp" and impl == "torch":
        from torch.distributed.device_mesh import init_device_mesh

        wrapped = _torch_fsdp(model, init_device_mesh(device.type, (world,)))
    elif strategy == "fsdp":
        wrapped = FSDP(model)
    else:
        wrapped = DDPBucketed(model, 25.0) if impl == "ours" else nn.parallel.DistributedDataParallel(model)

    def forward_backward(x, y):  # each rank trains on its slice of the batch
        _lm_loss(wrapped(x[local]), y[local]).backward()
        if hasattr(wrapped, "finish_gradient_synchronization"):
            wrapped.finish_gradient_synchronization()

    return forward_backward, wrapped.parameters()


def _make_step(strategy: str, impl: str, config: BenchParallelConfig, device, rank: int) -> Callable:
    """Build the model for one variant and return ``step(inputs, targets)`` (the global batch in)."""
    torch.manual_seed(0)
    model = TransformerLM(config.model).to(device)
    if strategy == "pp":
        forward_backward, params = _pipeline_step(model, config)
    elif strategy == "tp":
        forward_backward, params = _tensor_parallel_step(model, impl, config.world_size, device)
    else:
        forward_backward, params = _data_parallel_step(model, strategy, impl, config, device, rank)
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step(x, y):
        forward_backward(x, y)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _batch(config: BenchParallelConfig, step: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    tokens = torch.randint(
        0, config.vocab_size, (config.batch_size, config.context_length + 1), generator=generator
    )
    tokens = tokens.to(device)
    return tokens[:, :-1], tokens[:, 1:]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _variants(config: BenchParallelConfig) -> list[tuple[str, str]]:
    return [(s, impl) for s in config.strategies for impl in (("ours",) if s == "pp" else ("ours", "torch"))]


def _worker(rank: int, world_size: int, config: BenchParallelConfig) -> dict:
    device = torch.device("cuda", rank) if config.backend == "nccl" else torch.device("cpu")
    results = {}
    for strategy, impl in _variants(config):  # memory: model and optimizer built inside
        with PeakMemory(device) as peak:
            step = _make_step(strategy, impl, config, device, rank)
            for i in range(2):
                step(*_batch(config, i, device))
            del step
        results[(strategy, impl)] = {"peak_bytes": peak.bytes, "times": []}
    steps = {v: _make_step(*v, config, device, rank) for v in _variants(config)}
    for i in range(config.warmup_steps + config.steps):
        batch = _batch(config, 100 + i, device)
        for variant, step in steps.items():  # one step each per round
            dist.barrier()
            _sync(device)
            start = time.perf_counter()
            step(*batch)
            _sync(device)
            if i >= config.warmup_steps:
                results[variant]["times"].append(time.perf_counter() - start)
    for variant, step in steps.items():
        with CommunicationMeter(world_size) as meter:
            step(*_batch(config, 999, device))
        results[variant].update(sent_bytes=meter.sent_bytes, calls=meter.calls)
        results[variant]["step_s"] = statistics.median(results[variant].pop("times"))
    if "pp" in config.strategies:
        results["bubble"] = _bubbles(config, device)
    return results


def _bubbles(config: BenchParallelConfig, device) -> dict[int, dict]:
    """Per number of micro-batches m: the wall-clock bubble (median over 3 steps) and the executed
    orders (rank 0 replays them)."""
    bubbles = {}
    for m in (1, 2, 4, 8, 16):
        if config.batch_size % m:
            continue
        torch.manual_seed(0)
        pipeline = PipelineParallel(TransformerLM(config.model).to(device), m, "1f1b")
        walls = []
        for i in range(4):
            stats = pipeline.train_step(*_batch(config, i, device), _lm_loss)
            walls.append(stats.bubble_wall)
        orders = [None] * config.world_size
        dist.all_gather_object(orders, stats.order)
        bubbles[m] = {"wall": statistics.median(walls[1:]), "schedule": schedule_bubble(orders)}
    return bubbles


# ---- tables ----


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    body = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    ]
    return "\n".join([line, "-" * len(line), *body])


def _measured(per_rank: list[dict], variant) -> dict[str, float]:
    """Slowest step, most bytes sent, largest peak over the ranks."""
    return {
        "step_s": max(r[variant]["step_s"] for r in per_rank),
        "sent": max(r[variant]["sent_bytes"] for r in per_rank),
        "peak": max(r[variant]["peak_bytes"] for r in per_rank),
    }


def _comparison_rows(config: BenchParallelConfig, per_rank: list[dict]) -> list[list[str]]:
    rows = []
    for strategy in config.strategies:
        ours = _measured(per_rank, (strategy, "ours"))
        impls = [("ours", ours)]
        if strategy != "pp":
            impls.append(("torch", _measured(per_rank, (strategy, "torch"))))
        for impl, m in impls:
            rows.append(
                [
                    f"{strategy} {impl}",
                    f"{m['step_s'] * 1e3:.0f}",
                    f"{m['sent'] / MB:.2f}",
                    f"{m['peak'] / MB:.1f}",
                ]
            )
        if strategy != "pp":
            theirs = impls[1][1]
            rows.append(
                [f"{strategy} ours/torch", f"{ours['step_s'] / theirs['step_s']:.2f}",
                 f"{ours['sent'] / theirs['sent']:.2f}", f"{ours['peak'] / theirs['peak']:.2f}"]
            )  # fmt: skip
    return rows


def _accounting_rows(config: BenchParallelConfig, per_rank: list[dict]) -> list[list[str]]:
    rows = []
    tokens = config.batch_size * config.context_length
    for strategy in config.strategies:
        per_rank_tokens = tokens // config.world_size if strategy in ("ddp", "fsdp") else tokens
        costs = strategy_costs(strategy, config.model, config.world_size, per_rank_tokens)
        m = _measured(per_rank, (strategy, "ours"))
        calls = per_rank[0][(strategy, "ours")]["calls"]
        rows.append(
            [strategy, f"{costs.sent_bytes / MB:.2f}", f"{m['sent'] / MB:.2f}", f"{costs.state_bytes / MB:.1f}",
             f"{m['peak'] / MB:.1f}", ", ".join(f"{k} x{v}" for k, v in sorted(calls.items()))]
        )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, BenchParallelConfig)
    config = config_from_arguments(BenchParallelConfig, parser.parse_args(argv))
    if config.backend == "nccl" and torch.cuda.device_count() < config.world_size:
        raise ValueError(
            f"--backend nccl needs {config.world_size} GPUs; {torch.cuda.device_count()} visible"
        )
    params = config.model.num_parameters()
    print(
        f"torch {torch.__version__}, {config.backend}, {config.world_size} ranks x {config.threads_per_rank} "
        f"thread(s), {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; TransformerLM "
        f"d_model={config.d_model} layers={config.num_layers} vocab={config.vocab_size} ({params / 1e6:.2f}M "
        f"parameters), global batch {config.batch_size}x{config.context_length}, AdamW, fp32"
    )
    per_rank = run_on_local_ranks(
        _worker, config.world_size, config, backend=config.backend, threads=config.threads_per_rank
    )
    print(f"\nours vs PyTorch (median of {config.steps} steps; slowest rank / most bytes / largest peak)")
    print(
        _table(
            ["variant", "step ms", "sent MiB/step/rank", "peak MiB/rank"], _comparison_rows(config, per_rank)
        )
    )
    print("\naccounting (ours): the formulas of systems.parallel_cost beside the measurements")
    headers = ["strategy", "formula sent MiB", "measured sent MiB", "formula state MiB", "measured peak MiB"]
    print(_table([*headers, "collectives per step (rank 0)"], _accounting_rows(config, per_rank)))
    if "pp" in config.strategies:
        p = config.world_size
        rows = [
            [str(m), f"{(p - 1) / (m + p - 1):.3f}", f"{b['schedule']:.3f}",
             f"{max(r['bubble'][m]['wall'] for r in per_rank):.3f}"]
            for m, b in per_rank[0]["bubble"].items()
        ]  # fmt: skip
        print(
            f"\npipeline bubble, 1F1B on {p} stages: formula, the executed schedule replayed (F=1, B=2), wall clock"
        )
        print(_table(["micro-batches", "(p-1)/(m+p-1)", "schedule", "wall clock (idler rank)"], rows))
    return 0


if __name__ == "__main__":
    run_main(main)
