"""Benchmark RMSNorm: ours (PyTorch autograd, Triton) against torch's F.rms_norm and torch.compile.

Times forward and forward+backward over hidden sizes, prints milliseconds, effective bandwidth (GB/s:
the bytes a fused kernel must move -- read x, write y; backward also reads x and dy and writes dx --
divided by the time), the fraction of the card's peak HBM bandwidth on a GPU, the ratio to F.rms_norm
(ours / theirs: below 1 is faster) and the largest difference from F.rms_norm in fp32 (a timed kernel
that computes the wrong thing would show here). The target on an H100: >= 80% of HBM bandwidth and
at least as fast as torch.compile. (Our backward reads x and dy a second time for dg, as torch's does,
so its bytes-moved figure counts less than it really moves.)

On a GPU the times are ``triton.testing.do_bench`` medians (CUDA events, L2 flushed before each call;
``systems.benchmarking``), not host timers around single launches.

On the CPU the sizes are reduced and the Triton rows are skipped: without a GPU Triton only runs in its
interpreter, which executes every program in numpy and is far too slow to time meaningfully.

Examples::

    python scripts/bench_rmsnorm.py                      # CPU: 8192 rows x {1024, 4096}, ~2-4 min on 2 cores
    python scripts/bench_rmsnorm.py --no-compile          # skip torch.compile (its first compile is slow)
    python scripts/bench_rmsnorm.py --device cuda --rows 50000 --hidden 1024 2048 4096 8192 --dtype bfloat16
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    check_names,
    check_positive,
    config_from_arguments,
    run_main,
)
from basics.device import resolve_device
from systems.benchmarking import device_description, peak_bandwidth_gbps, time_ms


@dataclass(frozen=True)
class BenchRMSNormConfig:
    device: str = "auto"  # auto | cpu | cuda
    rows: int | None = None  # rows of x; None: 50,000 on a GPU, 8,192 on the CPU
    hidden: tuple[int, ...] | None = None  # hidden sizes; None: 1024 2048 4096 8192 (GPU), 1024 4096 (CPU)
    dtype: str = "float32"  # float32 | bfloat16
    warmup: int = 3  # untimed calls before timing (compilation, caches)
    iters: int = 10  # CPU: timed calls, the fastest is reported (GPU: do_bench's median over ~100 ms)
    compile: bool = True  # include torch.compile of the plain PyTorch RMSNorm
    peak_gbps: float | None = None  # peak memory bandwidth for the % column; None: look up by device name

    def __post_init__(self) -> None:
        check_positive(self, zero_ok=("warmup",))
        check_names("--dtype", self.dtype, ("float32", "bfloat16"))


def plain_rmsnorm(x: torch.Tensor, g: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps) * g.float()).to(x.dtype)


def implementations(config: BenchRMSNormConfig, device: torch.device) -> dict[str, Callable | str]:
    """name -> f(x, g), or a string saying why the row is skipped."""
    from systems.rmsnorm import RMSNormAutogradPyTorch, RMSNormAutogradTriton

    impls: dict[str, Callable | str] = {
        "ours: pytorch autograd": RMSNormAutogradPyTorch.apply,
        "ours: triton": RMSNormAutogradTriton.apply
        if device.type == "cuda"
        else "skipped: Triton needs a GPU (the CPU interpreter is not timeable)",
        "F.rms_norm": lambda x, g: F.rms_norm(x, (x.shape[-1],), g, 1e-5),
    }
    if config.compile:
        impls["torch.compile(plain)"] = torch.compile(plain_rmsnorm, dynamic=False)
    return impls


def gigabytes_moved(rows: int, hidden: int, element_size: int, backward: bool) -> float:
    # forward: read x, write y; backward: read x, dy, write dx (g and the per-row r are negligible)
    passes = 5 if backward else 2
    return passes * rows * hidden * element_size / 1e9


def peak_bandwidth(config: BenchRMSNormConfig, device: torch.device) -> float | None:
    return config.peak_gbps if config.peak_gbps is not None else peak_bandwidth_gbps(device)


def run(config: BenchRMSNormConfig) -> tuple[int, list[dict]]:
    """Time every implementation; returns (rows, one result dict per hidden size x impl x pass)."""
    device = resolve_device(config.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]
    on_gpu = device.type == "cuda"
    rows = config.rows or (50_000 if on_gpu else 8_192)
    hidden_sizes = config.hidden or ((1024, 2048, 4096, 8192) if on_gpu else (1024, 4096))
    peak = peak_bandwidth(config, device)
    results = []
    for hidden in hidden_sizes:
        x = torch.randn(rows, hidden, device=device, dtype=dtype)
        g = torch.randn(hidden, device=device, dtype=dtype)
        dy = torch.randn_like(x)
        timings: dict[tuple[str, str], float | str] = {}
        errors: dict[str, float] = {}  # max |y - F.rms_norm(fp32)|: what is timed is also checked
        expected = F.rms_norm(x.float(), (hidden,), g.float(), 1e-5)
        for name, fn in implementations(config, device).items():
            if not isinstance(fn, str):
                try:
                    with torch.no_grad():
                        errors[name] = (fn(x, g).float() - expected).abs().max().item()
                except Exception:  # reported as "failed" by the timing below
                    pass
            for pass_name in ("forward", "forward+backward"):
                if isinstance(fn, str):
                    timings[name, pass_name] = fn
                    continue
                backward = pass_name != "forward"
                xr, gr = x.detach().requires_grad_(backward), g.detach().requires_grad_(backward)

                def step(fn=fn, xr=xr, gr=gr, dy=dy, backward=backward):
                    y = fn(xr, gr)
                    if backward:
                        y.backward(dy)
                        xr.grad = gr.grad = None

                try:
                    timings[name, pass_name] = time_ms(step, device, config.warmup, config.iters)
                except Exception as error:  # e.g. torch.compile without a working C++ compiler
                    timings[name, pass_name] = f"failed: {type(error).__name__}"
        for (name, pass_name), ms in timings.items():
            peer = timings["F.rms_norm", pass_name]
            row = dict(hidden=hidden, impl=name, pass_=pass_name, ms=ms, err=errors.get(name))
            if isinstance(ms, float):
                gbps = gigabytes_moved(rows, hidden, x.element_size(), pass_name != "forward") / (ms / 1e3)
                row.update(gbps=gbps, peak=gbps / peak if peak else None, ratio=ms / peer)
            results.append(row)
    return rows, results


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, BenchRMSNormConfig)
    config = config_from_arguments(BenchRMSNormConfig, parser.parse_args())
    import triton

    rows, results = run(config)
    print(
        f"RMSNorm benchmark -- {device_description(resolve_device(config.device))}, torch {torch.__version__}, "
        f"triton {triton.__version__}, rows {rows}, dtype {config.dtype}, "
        + ("do_bench median" if resolve_device(config.device).type == "cuda" else f"best of {config.iters}")
    )
    header = f"{'hidden':>6}  {'implementation':<24} {'pass':<17} {'ms':>9} {'GB/s':>8} {'% peak':>7} {'/ F.rms_norm':>12} {'max err':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        if isinstance(r["ms"], str):
            print(f"{r['hidden']:>6}  {r['impl']:<24} {r['pass_']:<17} {r['ms']}")
            continue
        peak = f"{100 * r['peak']:.0f}%" if r.get("peak") else "-"
        print(
            f"{r['hidden']:>6}  {r['impl']:<24} {r['pass_']:<17} {r['ms']:>9.3f} {r['gbps']:>8.1f} "
            f"{peak:>7} {r['ratio']:>11.2f}x {r['err']:>8.1e}"
        )


if __name__ == "__main__":
    run_main(main)
