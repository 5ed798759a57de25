"""Benchmark the Transformer: forward and forward+backward time at the course's model sizes.

For each model size, precision (fp32, or bf16 under ``torch.autocast``) and implementation it runs
``--warmup`` untimed steps, then ``--steps`` timed ones (CUDA events around each step on a GPU, wall
time on the CPU; ``systems.benchmarking.step_times_ms``), and prints the
mean and standard deviation in ms, tokens per second, peak GPU memory, and the ratio to torch's fused
kernels (``fast``: F.rms_norm + F.scaled_dot_product_attention; ours / theirs, below 1 is faster).
Implementations: ``reference`` (the handout's plain PyTorch), ``fast`` (torch fused kernels) and
``triton`` (our Triton RMSNorm and FlashAttention-2; GPU only -- skipped on the CPU, where Triton only
runs in its interpreter).

Optional: ``--trace-dir DIR`` exports a torch profiler trace (open in chrome://tracing or Perfetto) of
one forward+backward per configuration; ``--memory-snapshot DIR`` (CUDA) dumps a memory-history pickle
per configuration for https://pytorch.org/memory_viz.

Sizes (vocab 10,000): small d768/ff3072/12 layers/12 heads, medium 1024/4096/24/16, large
1280/5120/36/20, xl 1600/6400/48/25, 2.7B 2560/10240/32/32. On the CPU only ``small`` at a reduced
context and batch fits in minutes.

Examples::

    python scripts/bench_model.py                     # CPU: small, context 128, batch 1, fp32 + bf16, ~2-5 min
    python scripts/bench_model.py --device cuda --sizes small medium large xl 2.7B --context-length 512 \\
        --batch-size 4 --warmup 5 --steps 10 --impls reference fast triton --trace-dir traces
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    check_names,
    check_positive,
    config_from_arguments,
    output_dir,
    run_main,
)
from basics.device import resolve_device
from basics.model import ModelConfig, TransformerLM
from systems.benchmarking import device_description, step_times_ms, synchronize

MODEL_SIZES = {  # name: (d_model, d_ff, num_layers, num_heads), from the course handout
    "small": (768, 3072, 12, 12),
    "medium": (1024, 4096, 24, 16),
    "large": (1280, 5120, 36, 20),
    "xl": (1600, 6400, 48, 25),
    "2.7B": (2560, 10240, 32, 32),
}
IMPLS = {  # name: ModelConfig fields
    "reference": dict(),
    "fast": dict(norm_impl="torch", attention_impl="sdpa", rope_impl="complex"),
    "triton": dict(norm_impl="triton", attention_impl="flash_triton", rope_impl="complex"),
}
PEER = "fast"


@dataclass(frozen=True)
class BenchModelConfig:
    device: str = "auto"  # auto | cpu | cuda
    sizes: tuple[str, ...] | None = None  # model sizes; None: all five (GPU), small (CPU)
    context_length: int | None = None  # tokens per sequence; None: 512 (GPU), 128 (CPU)
    batch_size: int | None = None  # sequences per step; None: 4 (GPU), 1 (CPU)
    precisions: tuple[str, ...] = ("fp32", "bf16")  # fp32 and/or bf16 (autocast)
    impls: tuple[str, ...] = ("reference", "fast", "triton")  # reference | fast | triton
    warmup: int = 1  # untimed steps first (allocator, kernel compilation, caches)
    steps: int = 3  # timed steps
    trace_dir: str | None = None  # export a torch profiler trace of one forward+backward per configuration
    memory_snapshot: str | None = None  # CUDA: dump a memory-history snapshot per configuration

    def __post_init__(self) -> None:
        check_positive(self, zero_ok=("warmup",))
        check_names("--sizes", self.sizes, MODEL_SIZES)
        check_names("--precisions", self.precisions, ("fp32", "bf16"))
        check_names("--impls", self.impls, IMPLS)


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def benchmark_one(
    config: BenchModelConfig, device, size: str, precision: str, impl: str, context: int, batch: int
):
    """Times of forward and forward+backward for one configuration, plus peak memory."""
    d_model, d_ff, num_layers, num_heads = MODEL_SIZES[size]
    model_config = ModelConfig(
        vocab_size=10_000,
        context_length=context,
        d_model=d_model,
        d_ff=d_ff,
        num_layers=num_layers,
        num_heads=num_heads,
        rope_theta=10_000.0,
        **IMPLS[impl],
    )
    model = TransformerLM(model_config, device=device)
    tokens = torch.randint(0, 10_000, (batch, context + 1), device=device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def forward():
        with torch.no_grad(), autocast(device, precision):
            model(inputs)

    def forward_backward():
        with autocast(device, precision):
            logits = model(inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    tag = f"{size}_{precision}_{impl}"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        if config.memory_snapshot:
            torch.cuda.memory._record_memory_history(max_entries=1_000_000)
    result = {
        "forward": step_times_ms(forward, device, config.warmup, config.steps),
        "forward+backward": step_times_ms(forward_backward, device, config.warmup, config.steps),
    }
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        if config.memory_snapshot:
            Path(config.memory_snapshot).mkdir(parents=True, exist_ok=True)
            torch.cuda.memory._dump_snapshot(str(Path(config.memory_snapshot) / f"memory_{tag}.pickle"))
            torch.cuda.memory._record_memory_history(enabled=None)
    if config.trace_dir:
        Path(config.trace_dir).mkdir(parents=True, exist_ok=True)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities, record_shapes=True) as profiler:
            forward_backward()
            synchronize(device)
        profiler.export_chrome_trace(str(Path(config.trace_dir) / f"trace_{tag}.json"))
    del model
    return result


def run(config: BenchModelConfig) -> tuple[dict, list[dict]]:
    """Benchmark every size x precision x impl; returns (settings, one row per configuration and pass)."""
    device = resolve_device(config.device)
    on_gpu = device.type == "cuda"
    sizes = config.sizes or (tuple(MODEL_SIZES) if on_gpu else ("small",))
    context = config.context_length or (512 if on_gpu else 128)
    batch = config.batch_size or (4 if on_gpu else 1)
    for name, allowed, what in ((sizes, MODEL_SIZES, "size"), (config.impls, IMPLS, "impl")):
        unknown = [n for n in name if n not in allowed]
        if unknown:
            raise ValueError(f"unknown {what} {unknown}; choose from {', '.join(allowed)}")
    rows = []
    for size in sizes:
        for precision in config.precisions:
            timings = {}
            for impl in config.impls:
                if impl == "triton" and not on_gpu:
                    timings[impl] = "skipped: Triton needs a GPU (the CPU interpreter is not timeable)"
                    continue
                try:
                    timings[impl] = benchmark_one(config, device, size, precision, impl, context, batch)
                except torch.OutOfMemoryError:
                    timings[impl] = "out of memory"
                    torch.cuda.empty_cache()
            for impl, result in timings.items():
                base = dict(size=size, precision=precision, impl=impl)
                if isinstance(result, str):
                    rows.append({**base, "pass_": "all", "note": result})
                    continue
                for pass_name in ("forward", "forward+backward"):
                    times = result[pass_name]
                    mean = statistics.mean(times)
                    peer = timings.get(PEER)
                    ratio = mean / statistics.mean(peer[pass_name]) if isinstance(peer, dict) else None
                    rows.append(
                        {
                            **base,
                            "pass_": pass_name,
                            "mean_ms": mean,
                            "std_ms": statistics.stdev(times) if len(times) > 1 else 0.0,
                            "tokens_per_s": batch * context / (mean / 1e3),
                            "peak_gib": result.get("peak_gib"),
                            "ratio": ratio,
                        }
                    )
    return dict(device=device, context=context, batch=batch), rows


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, BenchModelConfig, types={"trace_dir": output_dir})
    config = config_from_arguments(BenchModelConfig, parser.parse_args())
    settings, rows = run(config)
    print(
        f"Model benchmark -- {device_description(settings['device'])}, torch {torch.__version__}, "
        f"context {settings['context']}, batch {settings['batch']}, warm-up {config.warmup}, "
        f"{config.steps} timed steps"
    )
    header = (
        f"{'size':<7} {'prec':<5} {'impl':<10} {'pass':<17} {'mean ms':>10} {'std ms':>9} {'tokens/s':>10} "
        f"{'peak GiB':>9} {'/ fast':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        lead = f"{r['size']:<7} {r['precision']:<5} {r['impl']:<10} "
        if "note" in r:
            print(lead + r["note"])
            continue
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        print(
            lead + f"{r['pass_']:<17} {r['mean_ms']:>10.1f} {r['std_ms']:>9.1f} {r['tokens_per_s']:>10.0f} "
            f"{peak:>9} {ratio:>7}"
        )
    if config.trace_dir:
        print(f"profiler traces in {config.trace_dir}/")


if __name__ == "__main__":
    run_main(main)
