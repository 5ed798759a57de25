"""Is the GPU path ready? The checks behind ``scripts/gpu_check.py``: one command on a CUDA machine.

Each check is a function ``check(config, device) -> list[CheckRow]`` in :data:`CHECKS`, run by
:func:`run_checks` in isolation: a check that raises becomes one FAIL row with a one-line reason and
the others still run. The rows form one table (:func:`format_table`):

- ``environment``: the GPU, its datasheet peaks, torch / triton / CUDA versions.
- ``kernel_accuracy``: our Triton RMSNorm and FlashAttention-2 against fp64 references, fp32 and bf16:
  the largest error of the output and of every gradient, relative to the reference's largest value.
- ``rmsnorm_speed`` / ``attention_speed``: ``do_bench`` times of ours, torch's fused kernel
  (``F.rms_norm``, SDPA) and ``torch.compile`` of the plain PyTorch version; GB/s and % of peak HBM
  bandwidth for RMSNorm (memory bound), TFLOP/s and % of peak for attention (compute bound).
- ``kernel_registers``: registers and spilled bytes per thread of every kernel the checks compiled.
- ``training``: the TinyStories model, 200 steps of the real training job (``basics.train.train``,
  compiled, bf16 autocast) on synthetic tokens, with torch's kernels and with ours: compile time,
  step time, tokens/s, MFU, peak memory, graph breaks.
- ``cpu_vs_gpu``: the first training steps of one small model on the CPU and on the GPU, fp32: the
  losses must agree (and roughly so under bf16 autocast).
- ``no_host_sync``: training steps with our kernels under ``torch.cuda.set_sync_debug_mode("error")``
  (on the CPU: no host reads among the ops the profiler sees).
- ``nccl``: the training job as a one-rank NCCL data-parallel run (bucketed DDP) in a child process;
  its losses must equal the single-process run's.
- ``second_gpu``: the kernels on ``cuda:1`` (launches must follow the tensors' device), when there is one.

The checks also run on the CPU with small sizes (the graders do that: the kernels then go through
the Triton interpreter and the timings mean nothing), which keeps their logic tested without a GPU.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import systems  # noqa: F401  (registers the unit-2 kernels with the unit-1 model)
from basics.cli import check_positive
from basics.model import ModelConfig, TransformerLM
from basics.train import TrainConfig, train
from systems.benchmarking import peak_bandwidth_gbps, peak_tflops, time_ms
from systems.flash_attention import FlashAttentionTriton, attention_reference
from systems.rmsnorm import RMSNormAutogradTriton, rmsnorm_reference

__all__ = ["GpuCheckConfig", "CheckRow", "CHECKS", "run_checks", "format_table"]


@dataclass(frozen=True)
class GpuCheckConfig:
    """Sizes of the checks. The defaults fit in about 8 minutes on one H100."""

    norm_rows: int = 32768  # RMSNorm rows (batch x seq) for accuracy and speed
    norm_hidden: tuple[int, ...] = (1024, 4096)  # RMSNorm hidden sizes
    attn_batch_heads: tuple[int, int] = (4, 16)  # attention (batch, heads)
    attn_seq: tuple[int, ...] = (1024, 4096)  # attention sequence lengths timed
    attn_head_dims: tuple[int, ...] = (64, 128)  # attention head dims
    accuracy_seq: int = 1000  # attention sequence length of the accuracy check (not a tile multiple)
    train_model: ModelConfig = ModelConfig(  # the TinyStories model of the handout
        vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344
    )
    train_batch: int = 128  # sequences per step (the TinyStories preset)
    train_steps: int = 200  # steps per training run
    compile: bool = True  # torch.compile the training runs
    compare_steps: int = 5  # steps of the CPU-vs-GPU comparison
    timeout_s: float = 300.0  # the NCCL child process is killed after this

    def __post_init__(self) -> None:
        check_positive(self)  # every size, count and the timeout: finite and > 0
        counts = dict(norm_rows=self.norm_rows, accuracy_seq=self.accuracy_seq, train_batch=self.train_batch)
        counts |= dict(train_steps=self.train_steps, compare_steps=self.compare_steps)
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1; got {value}")
        sizes = (*self.norm_hidden, *self.attn_seq, *self.attn_head_dims, *self.attn_batch_heads)
        if len(self.attn_batch_heads) != 2 or min(sizes, default=0) < 1:
            raise ValueError(
                "attn_batch_heads must be two positive numbers (batch, heads), and every size positive"
            )
        if self.train_steps < 4:
            raise ValueError(
                f"train_steps must be at least 4 (step time is measured over the second half); got {self.train_steps}"
            )


@dataclass(frozen=True)
class CheckRow:
    """One line of the table."""

    check: str  # the check's name
    case: str  # what was measured (shape, dtype, implementation)
    status: str  # ok | FAIL | info | skip
    measured: str  # the numbers


# ---- small helpers ----
def _rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """max |ours - ref| / max(1, max |ref|): an error relative to the values' scale."""
    return ((ours.double() - ref.double()).abs().max() / ref.double().abs().max().clamp(min=1.0)).item()


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]


def _accuracy_row(check: str, case: str, errors: dict[str, float], tolerance: float) -> CheckRow:
    status = "ok" if max(errors.values()) <= tolerance else "FAIL"
    measured = " ".join(f"{name} {err:.1e}" for name, err in errors.items()) + f" (tol {tolerance:.0e})"
    return CheckRow(check, case, status, measured)


# ---- environment ----
def check_environment(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    import triton

    versions = f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}"
    if device.type != "cuda":
        return [CheckRow("environment", "cpu", "info", versions)]
    props = torch.cuda.get_device_properties(device)
    peaks = f"peak HBM {peak_bandwidth_gbps(device)} GB/s, bf16 {peak_tflops(device)} TFLOP/s"
    name = f"{props.name} (sm_{props.major}{props.minor}, {props.multi_processor_count} SMs)"
    return [CheckRow("environment", name, "info", f"{versions}; {peaks}")]


# ---- accuracy of the kernels ----
def check_kernel_accuracy(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        rows.append(_rmsnorm_accuracy(config, device, dtype))
        for d in config.attn_head_dims:
            rows.append(_attention_accuracy(config, device, dtype, d))
    return rows


def _rmsnorm_accuracy(config: GpuCheckConfig, device: torch.device, dtype: torch.dtype) -> CheckRow:
    hidden = config.norm_hidden[-1]
    x = torch.randn(config.norm_rows, hidden, device=device).to(dtype).requires_grad_()
    g = (1 + 0.1 * torch.randn(hidden, device=device)).to(dtype).requires_grad_()
    dy = torch.randn_like(x)
    y = RMSNormAutogradTriton.apply(x, g)
    dx, dg = torch.autograd.grad(y, (x, g), dy)
    x64, g64 = (t.detach().double().requires_grad_() for t in (x, g))
    y64 = rmsnorm_reference(x64, g64)
    dx64, dg64 = torch.autograd.grad(y64, (x64, g64), dy.double())
    errors = {"y": _rel_err(y, y64), "dx": _rel_err(dx, dx64), "dg": _rel_err(dg, dg64)}
    case = f"rmsnorm {config.norm_rows}x{hidden} {_dtype_name(dtype)}"
    return _accuracy_row("kernel_accuracy", case, errors, 1e-4 if dtype == torch.float32 else 2e-2)


def _attention_accuracy(config: GpuCheckConfig, device: torch.device, dtype: torch.dtype, d: int) -> CheckRow:
    batch, heads = config.attn_batch_heads
    shape = (batch, heads, config.accuracy_seq, d)
    q, k, v = (torch.randn(shape, device=device).to(dtype).requires_grad_() for _ in range(3))
    do = torch.randn(shape, device=device).to(dtype)
    out = FlashAttentionTriton.apply(q, k, v, True)
    grads = torch.autograd.grad(out, (q, k, v), do)
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    out64, _ = attention_reference(q64, k64, v64, is_causal=True)
    grads64 = torch.autograd.grad(out64, (q64, k64, v64), do.double())
    errors = {"O": _rel_err(out, out64)} | {
        name: _rel_err(ours, ref) for name, ours, ref in zip(("dQ", "dK", "dV"), grads, grads64)
    }
    case = f"flash {batch}x{heads}x{config.accuracy_seq}x{d} causal {_dtype_name(dtype)}"
    return _accuracy_row("kernel_accuracy", case, errors, 1e-3 if dtype == torch.float32 else 3e-2)


# ---- speed of the kernels ----
def _plain_rmsnorm(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5) * g.float()).to(x.dtype)


def _time_passes(fn: Callable, inputs: list[torch.Tensor], device: torch.device) -> dict[str, float]:
    """do_bench ms of the forward alone and of forward + backward (gradient of sum(out * w))."""
    grad_out = torch.randn_like(fn(*inputs))

    def forward_backward():
        for t in inputs:
            t.grad = None
        fn(*inputs).backward(grad_out)

    with torch.no_grad():
        forward = time_ms(lambda: fn(*inputs), device, warmup=2, iters=3)
    return {"fwd": forward, "fwd+bwd": time_ms(forward_backward, device, warmup=2, iters=3)}


def check_rmsnorm_speed(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    peak = peak_bandwidth_gbps(device)
    impls = {
        "ours (triton)": RMSNormAutogradTriton.apply,
        "F.rms_norm": lambda x, g: F.rms_norm(x, (x.shape[-1],), g, 1e-5),
        "torch.compile": torch.compile(_plain_rmsnorm, dynamic=False),
    }
    rows = []
    for hidden in config.norm_hidden:
        x = torch.randn(config.norm_rows, hidden, device=device, dtype=torch.bfloat16).requires_grad_()
        g = torch.ones(hidden, device=device, dtype=torch.bfloat16).requires_grad_()
        times = {name: _time_passes(fn, [x, g], device) for name, fn in impls.items()}
        for name, passes in times.items():
            cells = []
            for pass_name, ms in passes.items():
                moved = (2 if pass_name == "fwd" else 5) * x.numel() * x.element_size()  # bytes, at least
                gbps = moved / (ms / 1e3) / 1e9
                share = f" {100 * gbps / peak:.0f}%" if peak else ""
                ratio = ms / times["F.rms_norm"][pass_name]
                cells.append(f"{pass_name} {ms:.3f} ms {gbps:.0f} GB/s{share} x{ratio:.2f}")
            rows.append(
                CheckRow(
                    "rmsnorm_speed", f"{config.norm_rows}x{hidden} bf16 {name}", "info", "; ".join(cells)
                )
            )
    return rows


def check_attention_speed(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    peak = peak_tflops(device)
    impls = {
        "ours (triton)": lambda q, k, v: FlashAttentionTriton.apply(q, k, v, True),
        "SDPA": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "torch.compile": torch.compile(lambda q, k, v: attention_reference(q, k, v, True)[0], dynamic=False),
    }
    batch, heads = config.attn_batch_heads
    rows = []
    for d in config.attn_head_dims:
        for seq in config.attn_seq:
            shape = (batch, heads, seq, d)
            qkv = [torch.randn(shape, device=device, dtype=torch.bfloat16).requires_grad_() for _ in range(3)]
            flops = 4 * batch * heads * seq * seq * d / 2  # causal forward: two matmuls over half of S
            times = {name: _time_passes(fn, qkv, device) for name, fn in impls.items()}
            for name, passes in times.items():
                cells = []
                for pass_name, ms in passes.items():
                    tflops = flops * (1.0 if pass_name == "fwd" else 3.5) / (ms / 1e3) / 1e12
                    share = f" {100 * tflops / peak:.0f}%" if peak else ""
                    cells.append(
                        f"{pass_name} {ms:.3f} ms {tflops:.1f} TFLOP/s{share} x{ms / times['SDPA'][pass_name]:.2f}"
                    )
                rows.append(
                    CheckRow(
                        "attention_speed", f"{batch}x{heads}x{seq}x{d} bf16 {name}", "info", "; ".join(cells)
                    )
                )
    return rows


# ---- registers of what ran ----
def check_kernel_registers(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    from systems import flash_attention_triton, rmsnorm_triton
    from systems.triton_resources import resource_usage

    kernels = [
        getattr(module, name) for module in (rmsnorm_triton, flash_attention_triton) for name in dir(module)
    ]
    kernels = [k for k in kernels if hasattr(k, "device_caches")]  # compiled (not interpreted) kernels
    rows = []
    for kernel in kernels:
        for caches in kernel.device_caches.values():
            for compiled in caches[0].values():
                usage = resource_usage(compiled)
                constants = {kernel.arg_names[i[0]]: v for i, v in compiled.src.constants.items()}
                tiles = {
                    k: v
                    for k, v in constants.items()
                    if k.isupper() and isinstance(v, int) and not isinstance(v, bool)
                }
                case = f"{compiled.name} {tiles} {compiled.metadata.num_warps} warps"
                status = "ok" if usage.spill_bytes == 0 else "FAIL"
                rows.append(
                    CheckRow(
                        "kernel_registers",
                        case,
                        status,
                        f"{usage.registers} registers, {usage.spill_bytes} B spilled, {usage.shared_bytes} B shared",
                    )
                )
    if not rows:
        rows.append(
            CheckRow(
                "kernel_registers", "-", "skip", "no compiled Triton kernel yet (run the kernel checks first)"
            )
        )
    return rows


# ---- the training job ----
def _synthetic_tokens(path: Path, vocab_size: int, count: int = 1_000_000, seed: int = 0) -> str:
    """A learnable token stream: each token is a fixed function of the previous one 90 % of the time,
    random otherwise (about 0.3 + 0.1 ln(vocab) nats per token to learn down to)."""
    rng = np.random.default_rng(seed)
    successor = rng.permutation(vocab_size)
    tokens = np.empty(count, dtype=np.uint16)
    tokens[0] = 0
    noise = rng.integers(0, vocab_size, count)
    keep = rng.random(count) < 0.9
    for i in range(1, count):
        tokens[i] = successor[tokens[i - 1]] if keep[i] else noise[i]
    np.save(path, tokens)
    return str(path)


def _train_records(
    model: ModelConfig, device: torch.device, directory: Path, steps: int, batch: int, **overrides
) -> list[dict]:
    """The training job's log records for a run of ``steps`` steps on synthetic tokens."""
    data = directory / f"tokens_{model.vocab_size}.npy"
    tokens = str(data) if data.exists() else _synthetic_tokens(data, model.vocab_size)
    settings = dict(
        model=model, train_data=tokens, out_dir=str(directory / f"run_{len(list(directory.iterdir()))}"),
        batch_size=batch, max_steps=steps, warmup_steps=min(10, steps), learning_rate=3e-3,
        min_learning_rate=3e-4, eval_interval=steps, checkpoint_interval=steps, log_interval=1,
        device=str(device), progress=False,
    )  # fmt: skip
    strategy = overrides.pop("strategy", None)  # a basics.strategy.Strategy, not a config field
    records: list[dict] = []
    train(TrainConfig(**(settings | overrides)), callback=records.append, strategy=strategy)
    return [r for r in records if "loss" in r]


def _training_summary(
    records: list[dict], tokens_per_step: int, model: ModelConfig, device: torch.device
) -> dict:
    half = len(records) // 2
    step_s = (records[-1]["elapsed_s"] - records[half]["elapsed_s"]) / (
        records[-1]["step"] - records[half]["step"]
    )
    first = records[0]
    compile_s = max(0.0, first["elapsed_s"] - first["step"] * step_s)  # the first steps' extra time
    tokens_per_s = tokens_per_step / step_s
    peak = peak_tflops(device)
    flops_per_token = 3 * model.flops_per_token()  # forward + backward (2x forward)
    mfu = flops_per_token * tokens_per_s / (peak * 1e12) if peak else None
    return dict(step_ms=1e3 * step_s, compile_s=compile_s, tokens_per_s=tokens_per_s, mfu=mfu)


def check_training(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    variants = {
        "torch kernels": dict(norm_impl="torch", attention_impl="sdpa", rope_impl="reference"),
        "our Triton kernels": dict(norm_impl="triton", attention_impl="flash_triton", rope_impl="reference"),
    }
    rows, finals = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, impls in variants.items():
            model = dataclasses.replace(config.train_model, **impls)
            torch._dynamo.reset()
            torch._dynamo.utils.counters.clear()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            records = _train_records(
                model, device, Path(tmp), config.train_steps, config.train_batch, compile=config.compile
            )
            breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
            memory = (
                torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            )
            summary = _training_summary(records, config.train_batch * model.context_length, model, device)
            finals[name] = records[-1]["loss"]
            learned = records[-1]["loss"] < records[0]["loss"] - 1.0 and math.isfinite(records[-1]["loss"])
            mfu = f"{100 * summary['mfu']:.0f}%" if summary["mfu"] else "-"
            measured = (
                f"compile {summary['compile_s']:.0f} s, step {summary['step_ms']:.1f} ms, "
                f"{summary['tokens_per_s']:,.0f} tokens/s, MFU {mfu}, peak {memory:.1f} GiB, "
                f"graph breaks {breaks}, loss {records[0]['loss']:.2f} -> {records[-1]['loss']:.2f}"
            )
            status = "ok" if learned and breaks == 0 else "FAIL"
            rows.append(
                CheckRow(
                    "training",
                    f"{config.train_steps} steps x {config.train_batch} x {model.context_length}, {name}",
                    status,
                    measured,
                )
            )
    gap = abs(finals["our Triton kernels"] - finals["torch kernels"]) / finals["torch kernels"]
    rows.append(
        CheckRow(
            "training",
            "final loss, ours vs torch kernels",
            "ok" if gap < 0.05 else "FAIL",
            f"relative difference {gap:.1e} (tol 5e-2)",
        )
    )
    return rows


_SMALL_MODEL = ModelConfig(vocab_size=512, context_length=64, d_model=128, num_layers=2, num_heads=4)


def check_cpu_vs_gpu(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = dict(steps=config.compare_steps, batch=8, compile=False)
        cpu = [r["loss"] for r in _train_records(_SMALL_MODEL, torch.device("cpu"), Path(tmp), **run)]
        # (autocast, tolerance): bf16 autocast only on CUDA, with a looser tolerance for its rounding.
        modes = ((False, 1e-4), (True, 2e-2)) if device.type == "cuda" else ((False, 1e-4),)
        for autocast, tolerance in modes:
            ours = [
                r["loss"] for r in _train_records(_SMALL_MODEL, device, Path(tmp), autocast=autocast, **run)
            ]
            worst = max(abs(a - b) / abs(b) for a, b in zip(ours, cpu))
            status = "ok" if worst <= tolerance else "FAIL"
            precision = "bf16 autocast" if autocast and device.type == "cuda" else "fp32"
            case = f"first {config.compare_steps} losses, {device.type} {precision} vs cpu fp32"
            losses = " ".join(f"{loss:.4f}" for loss in ours)
            rows.append(
                CheckRow(
                    "cpu_vs_gpu",
                    case,
                    status,
                    f"max relative difference {worst:.1e} (tol {tolerance:.0e}); {device.type}: {losses}",
                )
            )
    return rows


# ---- syncs, NCCL, a second GPU ----
def check_no_host_sync(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    modes = (False, True) if config.compile else (False,)
    return [_sync_free_steps(config.train_model, device, compiled) for compiled in modes]


_HOST_READS = ("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::nonzero")


def _sync_free_steps(model_config: ModelConfig, device: torch.device, compiled: bool) -> CheckRow:
    """Three training steps with our kernels after two warm-up ones, phase by phase; the row names
    the phases that made the host wait (see :func:`_syncs`)."""
    from basics.data import get_batch
    from basics.optim import AdamW
    from basics.strategy import Strategy
    from basics.train import training_loss

    model_config = dataclasses.replace(model_config, norm_impl="triton", attention_impl="flash_triton")
    tokens = np.random.default_rng(0).integers(0, model_config.vocab_size, 100_000).astype(np.uint16)
    torch.manual_seed(0)
    model = TransformerLM(model_config).to(device)
    optimizer, strategy, generator = AdamW(model.parameters(), lr=1e-3), Strategy(), torch.Generator()

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return training_loss(model, x, y, bf16=device.type == "cuda")

    compiled_loss = torch.compile(loss_fn) if compiled else loss_fn
    state: dict[str, object] = {}

    def draw() -> None:
        state["batch"] = get_batch(tokens, 8, model_config.context_length, device, generator=generator)

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        strategy.forward_backward(compiled_loss, [state["batch"]])

    phases = {
        "get_batch": draw,
        "forward/backward": forward_backward,
        "clip_gradients": lambda: strategy.clip_gradients(model, 1.0),
        "AdamW": optimizer.step,
    }
    for _ in range(2):  # warm-up: compilation, cuBLAS handles, the allocator's first blocks
        for phase in phases.values():
            phase()
    synced = set()
    for _ in range(3):
        for name, phase in phases.items():
            if _syncs(phase, device):
                synced.add(name)
    case = f"3 training steps with our kernels, {'compiled' if compiled else 'eager'}"
    measured = f"host syncs in: {', '.join(n for n in phases if n in synced)}" if synced else "no host sync"
    return CheckRow("no_host_sync", case, "FAIL" if synced else "ok", measured)


def _syncs(phase: Callable[[], object], device: torch.device) -> bool:
    """Whether ``phase()`` makes the host wait for the device: on a GPU under
    ``torch.cuda.set_sync_debug_mode("error")``; on the CPU, where nothing waits, whether it reads a
    tensor value on the host (what would sync on a GPU), from the torch profiler's dispatched ops."""
    if device.type != "cuda":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            phase()
        return any(event.name in _HOST_READS for event in profiler.events())
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        phase()
        return False
    except RuntimeError as error:
        if "synchroniz" not in str(error):
            raise
        return True
    finally:
        torch.cuda.set_sync_debug_mode(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_child(queue, device: str, directory: str, steps: int, port: int) -> None:
    """One rank of a data-parallel training job (bucketed DDP); puts its losses (or an error) in ``queue``."""
    from systems.strategy import DataParallel, DataParallelConfig

    os.environ.update(
        RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    try:
        strategy = DataParallel(DataParallelConfig(ddp="bucketed"))
        records = _train_records(
            _SMALL_MODEL, torch.device(device), Path(directory), steps, 8, compile=False, strategy=strategy
        )
        queue.put([r["loss"] for r in records])
    except Exception as error:  # reported by the parent
        queue.put(_one_line(error))


def check_nccl(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    backend = "nccl" if device.type == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        single = [
            r["loss"]
            for r in _train_records(_SMALL_MODEL, device, Path(tmp), config.compare_steps, 8, compile=False)
        ]
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        child = context.Process(
            target=_ddp_child, args=(queue, str(device), tmp, config.compare_steps, _free_port())
        )
        child.start()
        child.join(config.timeout_s)
        if child.is_alive():
            child.kill()
            return [
                CheckRow(
                    "nccl", f"one-rank {backend} DDP", "FAIL", f"no result after {config.timeout_s:.0f} s"
                )
            ]
        result = queue.get() if not queue.empty() else f"child exited with code {child.exitcode}"
    if isinstance(result, str):
        return [CheckRow("nccl", f"one-rank {backend} DDP", "FAIL", result)]
    worst = max(abs(a - b) for a, b in zip(result, single))
    status = "ok" if worst <= 1e-6 * max(single) and len(result) == len(single) else "FAIL"
    return [
        CheckRow(
            "nccl",
            f"one-rank {backend} bucketed DDP training job",
            status,
            f"losses equal the single-process run's to {worst:.1e}",
        )
    ]


def check_second_gpu(config: GpuCheckConfig, device: torch.device) -> list[CheckRow]:
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        return [CheckRow("second_gpu", "-", "skip", "needs two CUDA devices")]
    other = (
        torch.device("cuda", (device.index or 0) + 1)
        if (device.index or 0) + 1 < torch.cuda.device_count()
        else torch.device("cuda", 0)
    )
    x = torch.randn(4096, 1024, device=device, dtype=torch.bfloat16)
    g = torch.randn(1024, device=device, dtype=torch.bfloat16)
    q = torch.randn(2, 4, 512, 64, device=device, dtype=torch.bfloat16)
    with torch.cuda.device(device):  # the current device stays `device`; the tensors live on `other`
        here = (RMSNormAutogradTriton.apply(x, g), FlashAttentionTriton.apply(q, q, q, True))
        there = (
            RMSNormAutogradTriton.apply(x.to(other), g.to(other)),
            FlashAttentionTriton.apply(*(3 * [q.to(other)]), True),
        )
        torch.cuda.synchronize(other)
    same = all(torch.equal(a, b.to(device)) for a, b in zip(here, there))
    return [
        CheckRow(
            "second_gpu",
            f"tensors on {other}, current device {device}",
            "ok" if same else "FAIL",
            "RMSNorm and attention outputs equal to the same launch on the current device"
            if same
            else "outputs differ",
        )
    ]


# ---- the runner ----
CHECKS: dict[str, tuple[str, Callable[[GpuCheckConfig, torch.device], list[CheckRow]]]] = {
    "environment": ("the GPU, its peaks, torch / triton / CUDA versions", check_environment),
    "kernel_accuracy": ("Triton RMSNorm and FlashAttention vs fp64 references (outputs and gradients)", check_kernel_accuracy),
    "rmsnorm_speed": ("RMSNorm do_bench: ours vs F.rms_norm vs torch.compile, GB/s and % of peak HBM", check_rmsnorm_speed),
    "attention_speed": ("attention do_bench: ours vs SDPA vs torch.compile, TFLOP/s and % of peak", check_attention_speed),
    "kernel_registers": ("registers and spills of every Triton kernel compiled so far", check_kernel_registers),
    "training": ("200 TinyStories-shaped steps, torch vs our kernels: compile, step, tokens/s, MFU, memory, breaks", check_training),
    "cpu_vs_gpu": ("first training losses on the CPU and the GPU agree", check_cpu_vs_gpu),
    "no_host_sync": ("training steps with our kernels under set_sync_debug_mode('error')", check_no_host_sync),
    "nccl": ("a one-rank NCCL data-parallel training job matches the single-process run", check_nccl),
    "second_gpu": ("kernels on cuda:1 while cuda:0 is current", check_second_gpu),
}  # fmt: skip


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def run_checks(
    names: list[str],
    config: GpuCheckConfig,
    device: torch.device,
    progress: Callable[[str, list[CheckRow], float], None] | None = None,
    checks: dict | None = None,
) -> list[CheckRow]:
    """Run the named checks (of ``checks``, default :data:`CHECKS`) in order, each isolated: an
    exception becomes one FAIL row with a one-line reason. ``progress(name, rows, seconds)`` is
    called after each check."""
    checks = CHECKS if checks is None else checks
    unknown = [name for name in names if name not in checks]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(checks)}")
    rows = []
    for name in names:
        start = time.perf_counter()
        try:
            found = checks[name][1](config, device)
        except Exception as error:  # one failing check must not stop the others
            found = [CheckRow(name, "-", "FAIL", _one_line(error))]
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows += found
        if progress is not None:
            progress(name, found, time.perf_counter() - start)
    return rows


def format_table(rows: list[CheckRow]) -> str:
    """The rows as one aligned text table (the measured column last, unpadded)."""
    headers = CheckRow("check", "case", "status", "measured")
    widths = [max(len(getattr(r, f)) for r in [headers, *rows]) for f in ("check", "case", "status")]
    lines = []
    for row in [headers, *rows]:
        cells = [getattr(row, f).ljust(w) for f, w in zip(("check", "case", "status"), widths)]
        lines.append("  ".join([*cells, row.measured]).rstrip())
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)
