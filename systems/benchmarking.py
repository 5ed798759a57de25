"""Timing and peak-rate helpers shared by the unit-2 benchmarks and ``scripts/gpu_check.py``.

GPU work is asynchronous: a host timer around a kernel launch measures the launch, not the kernel, and
a host timer around launch + ``synchronize`` adds the launch and sync latency (20-50 us) to every
call -- for a 45 us RMSNorm that roughly halves the reported bandwidth. So on a GPU the time comes from
the GPU itself: :func:`time_ms` uses ``triton.testing.do_bench`` (CUDA events around each call, the
L2 cache flushed before each, so every call reads its inputs from HBM like a real layer does, and the
median over about 100 ms of calls), and :func:`time_ms_after_setup` records CUDA events around the
timed part only when each call needs untimed set-up first (a backward pass needs its forward). On the
CPU, which runs synchronously, both take the minimum wall time over a few calls: on a shared machine
the fastest run is the least disturbed one.

:func:`peak_bandwidth_gbps` and :func:`peak_tflops` look up the datasheet peaks of the GPU, for the
"% of peak" columns (HBM bandwidth for memory-bound kernels, tensor-core FLOP/s for MFU).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch

__all__ = [
    "device_description",
    "synchronize",
    "time_ms",
    "time_ms_after_setup",
    "step_times_ms",
    "peak_bandwidth_gbps",
    "peak_tflops",
]

# Datasheet peaks by device-name fragment, most specific first (the first fragment in the name wins).
PEAK_HBM_GBPS = {
    "H200": 4800.0,
    "H100 PCIe": 2000.0,
    "H100 NVL": 3900.0,
    "H100": 3350.0,  # SXM
    "A100-SXM4-80GB": 2039.0,
    "A100 80GB PCIe": 1935.0,
    "A100": 1555.0,  # 40 GB
    "L40S": 864.0,
    "L4": 300.0,
    "A10G": 600.0,
    "RTX 4090": 1008.0,
}
# Dense (no sparsity) TFLOP/s: (bf16 tensor cores, fp32 without tensor cores).
PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100 PCIe": (756.0, 51.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "L4": (121.0, 30.3),
    "A10G": (70.0, 31.2),
    "RTX 4090": (165.0, 82.6),
}


def device_description(device: torch.device) -> str:
    """'NVIDIA H100 80GB HBM3' or 'CPU (x86_64, 2 threads)' for a benchmark's header line."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU, which runs synchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int = 3, iters: int = 10) -> float:
    """Time of one ``fn()`` in ms: do_bench's median on a GPU, the fastest of ``iters`` calls on the CPU.

    ``warmup`` untimed calls come first (allocator, autotuning, compilation). On a GPU ``iters`` only
    sets a floor on the number of timed calls; do_bench runs as many as fit in about 100 ms.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device.type == "cuda":
        from triton.testing import do_bench

        with torch.cuda.device(device):
            return float(do_bench(fn, warmup=5, rep=100, return_mode="median"))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


def time_ms_after_setup(
    fn: Callable[[object], object],
    setup: Callable[[], object],
    device: torch.device,
    warmup: int = 3,
    iters: int = 10,
) -> float:
    """Time of ``fn(setup())`` in ms, not counting ``setup()``: median of CUDA-event times on a GPU
    (the events enclose ``fn`` only), the fastest of ``iters`` calls on the CPU."""
    for _ in range(warmup):
        fn(setup())
    synchronize(device)
    times = []
    for _ in range(iters):
        state = setup()
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(state)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn(state)
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times) if device.type == "cuda" else min(times)


def step_times_ms(step: Callable[[], object], device: torch.device, warmup: int, steps: int) -> list[float]:
    """Time of each of ``steps`` calls of ``step()`` in ms, after ``warmup`` untimed ones: CUDA events
    around each call on a GPU (read once at the end, so no sync between steps), wall time on the CPU.
    For steps of milliseconds, e.g. a model's forward and backward, where the spread matters too."""
    for _ in range(warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(steps)
        ]
        for start, end in events:
            start.record()
            step()
            end.record()
        synchronize(device)
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(steps):
        begin = time.perf_counter()
        step()
        times.append((time.perf_counter() - begin) * 1e3)
    return times


def _lookup(table: dict, device: torch.device):
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for fragment, value in table.items() if fragment in name), None)


def peak_bandwidth_gbps(device: torch.device) -> float | None:
    """Datasheet HBM bandwidth of ``device`` in GB/s; None for the CPU or an unknown GPU."""
    return _lookup(PEAK_HBM_GBPS, device)


def peak_tflops(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> float | None:
    """Datasheet dense TFLOP/s of ``device``: bf16/fp16 tensor cores, or fp32 without them."""
    peaks = _lookup(PEAK_TFLOPS, device)
    if peaks is None:
        return None
    return peaks[1] if dtype == torch.float32 else peaks[0]
