"""Benchmark data-parallel training on the CPU: all-reduce, DDP variants vs torch DDP, sharded optimizer.

Spawns ``--world-size`` gloo ranks (2 by default) on this machine and prints three tables:

1. all-reduce of fp32 tensors of 1-100 MB: time and bus bandwidth (2 (n-1)/n * bytes / time);
2. time per training step of a TransformerLM (basics.model; many parameter tensors) for our naive,
   overlapped and bucketed DDP (several bucket sizes) and ``torch.nn.parallel.DistributedDataParallel``,
   next to a no-communication baseline; "sync wait" is the time spent in
   ``finish_gradient_synchronization`` after backward -- the communication that was *not* hidden
   behind backward. The ratio column is step time / torch DDP's step time;
3. ShardedOptimizer vs plain AdamW: optimizer-state bytes and peak resident memory per rank.

Example (6 minutes on a busy 2-core machine, less when it is idle)::

    python scripts/bench_ddp.py
    python scripts/bench_ddp.py --sections ddp --num-layers 4 --bucket-sizes-mb 0.5 5 50
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    check_names,
    check_positive,
    config_from_arguments,
    run_main,
)
from basics.model import ModelConfig, TransformerLM
from systems.ddp import wrap_model
from systems.sharded_optimizer import ShardedOptimizer, optimizer_state_bytes

MB = 1024 * 1024


@dataclass(frozen=True)
class BenchDDPConfig:
    """What to benchmark; every field is a flag."""

    world_size: int = 2  # gloo ranks on this machine
    threads_per_rank: int = 1  # torch intra-op threads per rank
    sections: tuple[str, ...] = ("allreduce", "ddp", "sharded")  # which tables to produce
    sizes_mb: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0)  # all-reduce tensor sizes (MiB)
    allreduce_iters: int = 5  # timed all-reduces per size (after 2 warm-up ones)
    vocab_size: int = 10_000  # model: the course's vocabulary
    d_model: int = 256  # model width
    num_layers: int = 8  # Transformer blocks (each adds ~9 parameter tensors)
    num_heads: int = 8  # attention heads
    context_length: int = 128  # tokens per sequence
    batch_size: int = 4  # sequences per rank per step
    bucket_sizes_mb: tuple[float, ...] = (1.0, 10.0, 100.0)  # DDPBucketed bucket sizes (MiB)
    warmup_steps: int = 2  # untimed steps per variant
    steps: int = 5  # timed steps per variant

    def __post_init__(self) -> None:
        check_positive(self, zero_ok=("warmup_steps",))
        check_names("--sections", self.sections, ("allreduce", "ddp", "sharded"))


def _model_config(config: BenchDDPConfig) -> ModelConfig:
    return ModelConfig(
        vocab_size=config.vocab_size,
        context_length=config.context_length,
        d_model=config.d_model,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
    )


# ---- spawning: the parent hosts the rendezvous store on a port the OS picks ----


def _entry(rank: int, world_size: int, port: int, out_dir: str, threads: int, fn, args: tuple) -> None:
    torch.set_num_threads(threads)
    timeout = datetime.timedelta(seconds=600)
    store = dist.TCPStore("127.0.0.1", port, world_size + 1, is_master=False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
    try:
        result = fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def run_on_ranks(config: BenchDDPConfig, fn, *args) -> list:
    store = dist.TCPStore("127.0.0.1", 0, config.world_size + 1, is_master=True, wait_for_workers=False)
    with tempfile.TemporaryDirectory() as out_dir:
        spawn_args = (config.world_size, store.port, out_dir, config.threads_per_rank, fn, args)
        mp.spawn(_entry, args=spawn_args, nprocs=config.world_size, join=True)
        # weights_only=False is safe: this run's own ranks wrote these files into its temporary folder.
        return [
            torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(config.world_size)
        ]


# ---- 1. all-reduce ----


def _allreduce_worker(
    rank: int, world_size: int, sizes_mb: tuple[float, ...], iters: int
) -> dict[float, float]:
    times = {}
    for size_mb in sizes_mb:
        tensor = torch.randn(int(size_mb * MB) // 4)
        for _ in range(2):
            dist.all_reduce(tensor)
        dist.barrier()
        samples = []
        for _ in range(iters):
            start = time.perf_counter()
            dist.all_reduce(tensor)
            samples.append(time.perf_counter() - start)
        times[size_mb] = statistics.median(samples)
    return times


# ---- 2. DDP step time ----


def _batch(config: BenchDDPConfig, rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(rank * 100_003 + step)
    shape = (config.batch_size, config.context_length + 1)
    tokens = torch.randint(0, config.vocab_size, shape, generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def _ddp_variants(config: BenchDDPConfig) -> list[tuple[str, str, float]]:
    """(label, wrap_model variant, bucket size)."""
    variants = [
        ("no communication", "none", 0.0),
        ("naive", "naive", 0.0),
        ("overlap (per parameter)", "overlap", 0.0),
    ]
    variants += [(f"bucketed {size:g} MiB", "bucketed", size) for size in config.bucket_sizes_mb]
    variants.append(("torch DDP (25 MiB)", "torch", 25.0))
    return variants


def _ddp_worker(rank: int, world_size: int, config: BenchDDPConfig) -> dict[str, dict[str, float]]:
    """Every variant gets its own model (wrappers register hooks on it); the variants take turns,
    one step each per round, so a burst of load from elsewhere on the machine hits them all alike."""
    runs = []
    for label, variant, bucket_mb in _ddp_variants(config):
        torch.manual_seed(0)
        model = TransformerLM(_model_config(config))
        ddp = wrap_model(model, variant, bucket_mb) if variant != "none" else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runs.append((label, variant, ddp, optimizer, {"step": [], "forward+backward": [], "sync wait": []}))
    for step in range(config.warmup_steps + config.steps):
        inputs, targets = _batch(config, rank, step)
        for _, variant, ddp, optimizer, timings in runs:
            dist.barrier()  # start every step together, so waits measure communication
            start = time.perf_counter()
            logits = ddp(inputs)
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
            backward_done = time.perf_counter()
            if variant != "none":
                ddp.finish_gradient_synchronization()
            synced = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            end = time.perf_counter()
            if step >= config.warmup_steps:
                timings["step"].append(end - start)
                timings["forward+backward"].append(backward_done - start)
                timings["sync wait"].append(synced - backward_done)
    return {label: {k: statistics.median(v) for k, v in timings.items()} for label, _, _, _, timings in runs}


# ---- 3. sharded optimizer memory ----


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _sharded_worker(rank: int, world_size: int, config: BenchDDPConfig, sharded: bool) -> dict[str, float]:
    baseline = _rss_bytes()
    torch.manual_seed(0)
    model = TransformerLM(_model_config(config))
    ddp = wrap_model(model, "bucketed", 25.0)
    kwargs = {"lr": 1e-4, "weight_decay": 0.1}
    optimizer = ShardedOptimizer(model.parameters(), torch.optim.AdamW, **kwargs) if sharded else None
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), **kwargs)
    start = time.perf_counter()
    for step in range(2):
        inputs, targets = _batch(config, rank, step)
        logits = ddp(inputs)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
        ddp.finish_gradient_synchronization()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    elapsed = (time.perf_counter() - start) / 2
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        "parameters": parameter_bytes,
        "state": optimizer_state_bytes(optimizer),
        "peak_rss": peak,
        "peak_above_start": peak - baseline,
        "step_s": elapsed,
    }


# ---- tables ----


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    body = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    ]
    return "\n".join([line, "-" * len(line), *body])


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, BenchDDPConfig)
    config = config_from_arguments(BenchDDPConfig, parser.parse_args())
    unknown = set(config.sections) - {"allreduce", "ddp", "sharded"}
    if unknown:
        parser.error(f"unknown --sections {sorted(unknown)}; choose from allreduce, ddp, sharded")
    world = config.world_size
    print(
        f"torch {torch.__version__}, gloo, {world} ranks x {config.threads_per_rank} thread(s), "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )

    if "allreduce" in config.sections:
        per_rank = run_on_ranks(config, _allreduce_worker, config.sizes_mb, config.allreduce_iters)
        rows = []
        for size in config.sizes_mb:
            seconds = max(result[size] for result in per_rank)
            bus = 2 * (world - 1) / world * size * MB / seconds / 1e9
            rows.append([f"{size:g}", f"{seconds * 1e3:.2f}", f"{bus:.2f}"])
        print(f"\nall-reduce (fp32, sum, {world} ranks, median of {config.allreduce_iters})")
        print(_table(["size MiB", "time ms", "bus GB/s"], rows))

    model_config = _model_config(config)
    num_tensors = len(list(TransformerLM(model_config).parameters()))
    num_params = sum(p.numel() for p in TransformerLM(model_config).parameters())
    if "ddp" in config.sections:
        per_rank = run_on_ranks(config, _ddp_worker, config)
        torch_step = max(result["torch DDP (25 MiB)"]["step"] for result in per_rank)
        rows = []
        for label, _, _ in _ddp_variants(config):
            step = max(result[label]["step"] for result in per_rank)
            compute = max(result[label]["forward+backward"] for result in per_rank)
            wait = max(result[label]["sync wait"] for result in per_rank)
            rows.append(
                [
                    label,
                    f"{step * 1e3:.0f}",
                    f"{compute * 1e3:.0f}",
                    f"{wait * 1e3:.0f}",
                    f"{step / torch_step:.2f}",
                ]
            )
        print(
            f"\nDDP step time: TransformerLM d_model={config.d_model} layers={config.num_layers} "
            f"({num_params / 1e6:.1f}M parameters in {num_tensors} tensors, {num_params * 4 / MB:.0f} MiB of fp32 "
            f"gradients), batch {config.batch_size}x{config.context_length} per rank, AdamW, "
            f"median of {config.steps} steps (slowest rank)"
        )
        print(_table(["variant", "step ms", "fwd+bwd ms", "sync wait ms", "step / torch DDP"], rows))

    if "sharded" in config.sections:
        plain = run_on_ranks(config, _sharded_worker, config, False)
        sharded = run_on_ranks(config, _sharded_worker, config, True)
        rows = []
        for name, per_rank in (("AdamW (unsharded)", plain), ("ShardedOptimizer(AdamW)", sharded)):
            for rank, result in enumerate(per_rank):
                rows.append(
                    [
                        f"{name} rank {rank}",
                        f"{result['parameters'] / MB:.1f}",
                        f"{result['state'] / MB:.1f}",
                        f"{result['state'] / plain[rank]['state']:.2f}",
                        f"{result['peak_rss'] / MB:.0f}",
                        f"{result['peak_above_start'] / MB:.0f}",
                        f"{result['step_s'] * 1e3:.0f}",
                    ]
                )
        print(
            f"\nsharded optimizer state and peak memory per rank ({num_params / 1e6:.1f}M parameters, 2 steps)"
        )
        headers = ["optimizer", "params MiB", "opt state MiB", "state / unsharded", "peak RSS MiB"]
        print(_table([*headers, "peak - start MiB", "step ms"], rows))


if __name__ == "__main__":
    run_main(main)
