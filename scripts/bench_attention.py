"""Benchmark attention: our FlashAttention-2 (PyTorch tiled, Triton) against F.scaled_dot_product_attention.

For every (sequence length, head dim) it times forward, backward and forward+backward (on a GPU:
``triton.testing.do_bench`` medians, and CUDA events around the backward alone; on the CPU the best of
``--iters`` calls; ``systems.benchmarking``), and prints milliseconds, achieved TFLOP/s, the fraction
of the GPU's dense bf16/fp32 peak,
the ratio to SDPA (ours / theirs: below 1 is faster) and the largest difference of the output from
SDPA in fp32. FLOPs are counted as in the FlashAttention papers: forward 4 * batch * heads * seq^2 * d
(two matmuls), halved when causal; backward 2.5x forward.

On the CPU the sizes are reduced, and the Triton rows are skipped: without a GPU Triton only runs in
its interpreter, far too slow to time. The PyTorch tiled version loops over tiles in Python, so it is
skipped beyond ``--max-seq-pytorch``.

Examples::

    python scripts/bench_attention.py                 # CPU: seq 128 256 512, d 16 64, fp32, causal, ~1-2 min
    python scripts/bench_attention.py --device cuda --seq 128 256 512 1024 2048 4096 8192 16384 \\
        --d-head 16 32 64 128 --dtypes bfloat16 float32 --batch 1 --heads 16
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
from systems.benchmarking import device_description, peak_tflops, time_ms, time_ms_after_setup


@dataclass(frozen=True)
class BenchAttentionConfig:
    device: str = "auto"  # auto | cpu | cuda
    seq: tuple[int, ...] | None = None  # sequence lengths; None: 128..16384 (GPU), 128 256 512 (CPU)
    d_head: tuple[int, ...] | None = None  # head dims; None: 16 32 64 128 (GPU), 16 64 (CPU)
    dtypes: tuple[str, ...] | None = None  # float32 and/or bfloat16; None: both (GPU), float32 (CPU)
    batch: int = 1  # batch size
    heads: int = 4  # attention heads (flattened into the batch axis by our kernels)
    causal: bool = True  # causal masking
    warmup: int = 2  # untimed calls
    iters: int = 5  # timed calls (CPU: the fastest is reported; GPU: do_bench's median over ~100 ms)
    max_seq_pytorch: int = 2048  # skip the Python-loop tiled version above this length

    def __post_init__(self) -> None:
        check_positive(self, zero_ok=("warmup",))
        check_names("--dtypes", self.dtypes, ("float32", "bfloat16"))


def forward_flops(batch_heads: int, seq: int, d: int, causal: bool) -> float:
    return 4 * batch_heads * seq * seq * d / (2 if causal else 1)


def implementations(
    config: BenchAttentionConfig, device: torch.device, seq: int
) -> dict[str, Callable | str]:
    """name -> f(q, k, v, is_causal), or a string saying why the row is skipped."""
    from systems.flash_attention import FlashAttentionPyTorch, FlashAttentionTriton

    return {
        "ours: flash pytorch": FlashAttentionPyTorch.apply
        if seq <= config.max_seq_pytorch
        else f"skipped: Python tile loop, seq > {config.max_seq_pytorch}",
        "ours: flash triton": FlashAttentionTriton.apply
        if device.type == "cuda"
        else "skipped: Triton needs a GPU (the CPU interpreter is not timeable)",
        "F.sdpa": lambda q, k, v, causal: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
    }


def time_passes(fn: Callable, q, k, v, causal: bool, device, config) -> dict[str, float]:
    """Times of forward, backward (alone) and forward+backward, in ms."""
    grad = torch.randn_like(q)
    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))

    def forward():
        with torch.no_grad():
            fn(q, k, v, causal)

    def forward_backward():
        out = fn(qg, kg, vg, causal)
        out.backward(grad)
        qg.grad = kg.grad = vg.grad = None

    def backward(out) -> None:  # timed alone: the forward that makes `out` is untimed set-up
        out.backward(grad)
        qg.grad = kg.grad = vg.grad = None

    fwd = time_ms(forward, device, config.warmup, config.iters)
    both = time_ms(forward_backward, device, config.warmup, config.iters)
    bwd = time_ms_after_setup(backward, lambda: fn(qg, kg, vg, causal), device, config.warmup, config.iters)
    return {"forward": fwd, "backward": bwd, "forward+backward": both}


def measure(config: BenchAttentionConfig, device, dtype, d: int, seq: int) -> tuple[dict, dict]:
    """({impl: {pass: ms} or why skipped}, {impl: max |O - SDPA(fp32)|}) for one shape."""
    shape = (config.batch, config.heads, seq, d)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    timings: dict[str, dict[str, float] | str] = {}
    errors: dict[str, float] = {}  # what is timed is also checked
    with torch.no_grad():
        expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=config.causal)
    for name, fn in implementations(config, device, seq).items():
        if isinstance(fn, str):
            timings[name] = fn
            continue
        try:
            with torch.no_grad():
                errors[name] = (fn(q, k, v, config.causal).float() - expected).abs().max().item()
            timings[name] = time_passes(fn, q, k, v, config.causal, device, config)
        except torch.OutOfMemoryError:
            timings[name] = "out of memory"
            torch.cuda.empty_cache()
    return timings, errors


def run(config: BenchAttentionConfig) -> list[dict]:
    """One result dict per dtype x head dim x seq x implementation x pass."""
    device = resolve_device(config.device)
    on_gpu = device.type == "cuda"
    seqs = config.seq or ((128, 256, 512, 1024, 2048, 4096, 8192, 16384) if on_gpu else (128, 256, 512))
    d_heads = config.d_head or ((16, 32, 64, 128) if on_gpu else (16, 64))
    dtypes = config.dtypes or (("bfloat16", "float32") if on_gpu else ("float32",))
    pass_work = {"forward": 1.0, "backward": 2.5, "forward+backward": 3.5}  # in forward FLOPs
    results = []
    for dtype_name in dtypes:
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
        peak = peak_tflops(device, dtype)
        for d in d_heads:
            for seq in seqs:
                timings, errors = measure(config, device, dtype, d, seq)
                peer = timings["F.sdpa"]
                flops = forward_flops(config.batch * config.heads, seq, d, config.causal)
                for name, passes in timings.items():
                    base = dict(dtype=dtype_name, d=d, seq=seq, impl=name)
                    if isinstance(passes, str):
                        results.append({**base, "pass_": "all", "ms": passes})
                        continue
                    for pass_name, ms in passes.items():
                        tflops = flops * pass_work[pass_name] / (ms / 1e3) / 1e12 if ms > 0 else None
                        ratio = (
                            ms / peer[pass_name] if isinstance(peer, dict) and peer[pass_name] > 0 else None
                        )
                        results.append(
                            {**base, "pass_": pass_name, "ms": ms, "tflops": tflops, "ratio": ratio}
                            | {"err": errors[name], "peak": tflops / peak if tflops and peak else None}
                        )
    return results


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, BenchAttentionConfig)
    config = config_from_arguments(BenchAttentionConfig, parser.parse_args())
    import triton

    results = run(config)
    print(
        f"Attention benchmark -- {device_description(resolve_device(config.device))}, torch {torch.__version__}, "
        f"triton {triton.__version__}, batch {config.batch}, heads {config.heads}, causal {config.causal}, "
        + ("do_bench medians" if resolve_device(config.device).type == "cuda" else f"best of {config.iters}")
    )
    header = (
        f"{'dtype':<9} {'d':>4} {'seq':>6}  {'implementation':<20} {'pass':<17} {'ms':>10} {'TFLOP/s':>8} "
        f"{'% peak':>7} {'/ sdpa':>7} {'max err':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        lead = f"{r['dtype']:<9} {r['d']:>4} {r['seq']:>6}  {r['impl']:<20} "
        if isinstance(r["ms"], str):
            print(lead + r["ms"])
            continue
        tflops = f"{r['tflops']:.3g}" if r["tflops"] is not None else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        peak = f"{100 * r['peak']:.0f}%" if r["peak"] else "-"
        print(lead + f"{r['pass_']:<17} {r['ms']:>10.3f} {tflops:>8} {peak:>7} {ratio:>7} {r['err']:>8.1e}")


if __name__ == "__main__":
    run_main(main)
