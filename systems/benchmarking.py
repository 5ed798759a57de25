"""Timing helpers shared by the unit-2 benchmarks (``scripts/bench_*.py``).

GPU work is asynchronous: a timer around a kernel launch measures the launch, not the kernel. Fair
timing warms up first (allocator, autotuning, compilation), then synchronises the device after every
timed call. On a shared machine the minimum over several calls is the run least disturbed by others.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

import torch


def device_description(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' or 'CPU (x86_64, 2 threads)' for a benchmark's header line."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, which runs synchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Fastest wall time of ``fn()`` over ``iters`` calls, in ms, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)
