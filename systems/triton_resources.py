"""Registers and spills of every shipped kernel configuration, compiled for an H100 without one.

A GPU thread keeps its live values in registers (at most 255 of them on NVIDIA GPUs). When a kernel
needs more, the compiler *spills* the rest to local memory -- off-chip, as slow as global memory -- and
a memory-bound kernel that spills in its inner loop loses much of its speed. A kernel that uses many
registers also leaves room for fewer warps per SM (65,536 registers per SM are shared by its threads),
so the GPU has less work to switch to while a load is in flight.

Triton compiles a kernel through PTX to a cubin with NVIDIA's ``ptxas``, which ships inside triton's
NVIDIA backend, so the compile needs no GPU and no CUDA install: :func:`compile_for_gpu` builds the
binary for any target (``sm_90`` = H100 by default) and :func:`resource_usage` reads the registers per
thread and the spilled bytes from it with the bundled ``cuobjdump -res-usage``. :func:`shipped_launches`
records what our launchers would launch on a GPU (meta tensors under
:func:`systems.triton_launch.record_launches`) for every configuration in their tables, so
:func:`resource_report` checks exactly what ships -- the graders assert that nothing spills.

Compiling for a GPU needs a process without ``TRITON_INTERPRET`` (triton's own ``tl.sum``, ``tl.max``,
... are interpreted Python functions otherwise): the graders call :func:`resource_report` in a
subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass

import torch
import triton

from systems.triton_launch import Launch, record_launches

__all__ = [
    "SM90",
    "SHARED_LIMIT_SM90",
    "PARTS",
    "ResourceUsage",
    "compile_for_gpu",
    "resource_usage",
    "cuobjdump_path",
    "shipped_launches",
    "resource_report",
]

SM90 = ("cuda", 90, 32)  # (backend, compute capability, threads per warp) of an H100
SHARED_LIMIT_SM90 = 227 * 1024  # shared memory one block may use on an H100
PARTS = ("rmsnorm", "flash_forward", "flash_dkdv", "flash_dq")  # report groups, one subprocess each
RMSNORM_HIDDEN = (1024, 2048, 4096, 8192, 16384)  # hidden sizes we promise not to spill at
RMSNORM_ROWS = 16384


@dataclass(frozen=True)
class ResourceUsage:
    """Per-thread resources of a compiled kernel, as the GPU's loader sees them."""

    registers: int  # 32-bit registers per thread (255 is the hardware maximum)
    spill_bytes: int  # bytes of local memory per thread (spilled registers), 0 when none
    shared_bytes: int  # shared memory per block (static + dynamic)


def compile_for_gpu(recorded: Launch, target: tuple[str, int, int] = SM90):
    """Compile a recorded launch for ``target`` without a GPU; returns triton's CompiledKernel.

    Does what ``JITFunction.run`` does before a launch -- bind the arguments, specialise them
    (pointer alignment, integers divisible by 16), pack the signature -- with a fixed target instead
    of the current device's, so the binary is the one a launch on that GPU would build.
    """
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    kernel = recorded.kernel
    if not isinstance(kernel, JITFunction):
        raise RuntimeError(
            f"{recorded.name} is not a compilable Triton function (is TRITON_INTERPRET set?): "
            "compile ahead of time in a process without TRITON_INTERPRET"
        )
    gpu_target = GPUTarget(*target)
    backend = make_backend(gpu_target)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*recorded.args, **recorded.kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(
        backend, recorded.kwargs, bound, specialization, options
    )
    source = ASTSource(kernel, signature, constexprs, attrs)
    return triton.compile(source, target=gpu_target, options=options.__dict__)


def cuobjdump_path() -> str | None:
    """The cuobjdump that ships with triton's NVIDIA backend (or one on PATH); None if there is none."""
    bundled = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if os.access(bundled, os.X_OK):
        return bundled
    from shutil import which

    return which("cuobjdump")


def resource_usage(compiled) -> ResourceUsage:
    """Registers, spill bytes and shared memory of a compiled kernel, read from its cubin."""
    tool = cuobjdump_path()
    if tool is None:
        raise RuntimeError("cuobjdump not found (it ships with triton's NVIDIA backend)")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        listing = subprocess.run([tool, "-res-usage", cubin.name], capture_output=True, text=True, check=True)
    # e.g. "REG:218 STACK:0 SHARED:1024 LOCAL:0 ...". STACK is the per-thread stack frame, which for
    # these kernels (no local arrays, no calls) holds only spilled registers; LOCAL is other local memory.
    match = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", listing.stdout)
    if match is None:
        raise RuntimeError(f"unexpected cuobjdump output: {listing.stdout[-300:]!r}")
    registers, stack, static_shared, local = (int(v) for v in match.groups())
    return ResourceUsage(registers, stack + local, static_shared + int(compiled.metadata.shared))


_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32"}


def _meta(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device="meta")


def _rmsnorm_launches() -> list[tuple[str, Launch]]:
    from systems import rmsnorm_triton

    found = []
    for dtype in (torch.bfloat16, torch.float32):
        for hidden in RMSNORM_HIDDEN:
            x, g = _meta(RMSNORM_ROWS, hidden, dtype=dtype), _meta(hidden, dtype=dtype)
            with record_launches() as launches:
                _, rstd = rmsnorm_triton._forward(x, g, 1e-5)
                rmsnorm_triton._backward(x, x, g, rstd)
            found += [(f"H={hidden} {_DTYPE_NAMES[dtype]}", launch) for launch in launches]
    return found


def _flash_launches(kernel: str) -> list[tuple[str, Launch]]:
    from systems import flash_attention_triton as flash

    found = []
    previous = torch.get_float32_matmul_precision()
    try:
        for d_block, kind in flash.GPU_TILES[kernel]:
            dtype = torch.bfloat16 if kind == "16bit" else torch.float32
            torch.set_float32_matmul_precision({"16bit": previous, "tf32": "high", "tf32x3": "highest"}[kind])
            for is_causal in (True, False) if kind == "16bit" else (True,):
                q = _meta(4, 1024, d_block, dtype=dtype)
                with record_launches() as launches:
                    if kernel == "forward":
                        flash._forward(q, q, q, is_causal)
                    else:
                        flash._backward(q, q, q, q, _meta(4, 1024, dtype=torch.float32), q, is_causal)
                wanted = {"forward": "_flash_forward_kernel", "dkdv": "_flash_backward_dkdv_kernel"}
                name = wanted.get(kernel, "_flash_backward_dq_kernel")
                label = (
                    f"d={d_block} {'bf16' if kind == '16bit' else kind} {'causal' if is_causal else 'full'}"
                )
                found += [(label, launch) for launch in launches if launch.name == name]
    finally:
        torch.set_float32_matmul_precision(previous)
    return found


def shipped_launches(part: str) -> list[tuple[str, Launch]]:
    """(label, launch) for every configuration of one part of :data:`PARTS` our launchers ship."""
    if part == "rmsnorm":
        return _rmsnorm_launches()
    if part in ("flash_forward", "flash_dkdv", "flash_dq"):
        return _flash_launches(part.removeprefix("flash_"))
    raise ValueError(f"unknown part {part!r}; choose from {', '.join(PARTS)}")


def _tiles(launch: Launch) -> str:
    kw = launch.kwargs
    if "Q_TILE" in kw:
        return f"{kw['Q_TILE']}x{kw['K_TILE']}"
    if "BLOCK_ROWS" in kw:
        return f"{kw['BLOCK_ROWS']}x{kw['BLOCK_COLS']}"
    return str(kw["BLOCK_SIZE"])


def resource_report(part: str, target: tuple[str, int, int] = SM90) -> list[dict]:
    """Compile every shipped configuration of ``part`` for ``target``: one dict per kernel launch."""
    rows = []
    for label, launch in shipped_launches(part):
        usage = resource_usage(compile_for_gpu(launch, target))
        kernel = launch.name.strip("_").removesuffix("_kernel")
        rows.append(
            dict(kernel=kernel, config=label, tiles=_tiles(launch), warps=launch.kwargs.get("num_warps", 4))
            | asdict(usage)
        )
    return rows
