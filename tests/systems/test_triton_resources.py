"""No shipped Triton kernel configuration spills registers on an H100 -- checked without a GPU.

Each configuration our launchers would run on a GPU (RMSNorm at hidden sizes 1024-16384 in bf16 and
fp32; FlashAttention forward, dK/dV and dQ at every head-dim block of their tile tables, bf16 causal
and not, fp32 as tf32 and tf32x3) is compiled ahead of time for sm_90 with the ptxas that ships with
triton, and its registers and spills are read from the binary (``cuobjdump -res-usage``). A kernel
that spills keeps part of its working set in off-chip local memory; one that uses more shared memory
than a block may have fails to launch. The canary shows the measurement tells a spilling kernel from
a lean one.

The compiles run in a child process without TRITON_INTERPRET (triton's own functions are interpreted
otherwise), one per part so that pytest-xdist spreads them; together they take a few minutes: slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grading import child_env

pytestmark = [pytest.mark.extension, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MAX_REGISTERS = 255  # per thread on every NVIDIA GPU since Kepler
SHARED_LIMIT = 227 * 1024  # bytes of shared memory one block may use on an H100


def toolchain_missing() -> str | None:
    """Why an sm_90 compile cannot run here, or None: triton and its bundled ptxas/cuobjdump."""
    try:
        import triton
    except ImportError:
        return "triton is not installed (pip install '.[triton]')"
    tools = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    missing = [tool for tool in ("ptxas", "cuobjdump") if not os.access(tools / tool, os.X_OK)]
    return f"triton's NVIDIA backend lacks {', '.join(missing)} in {tools}" if missing else None


def compile_report(adapters, part: str) -> list[dict]:
    reason = toolchain_missing()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in child_env().items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9's default, set to silence its warning
    child = subprocess.run(
        [sys.executable, "-m", "tests.systems.triton_aot_child", adapters.__name__, part],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900,
    )  # fmt: skip
    assert child.returncode == 0, f"ahead-of-time compile failed:\n{child.stderr[-3000:]}"
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_measurement_tells_spilling_from_lean(adapters):
    rows = {row["kernel"]: row for row in compile_report(adapters, "canary")}
    assert rows["copy"]["spill_bytes"] == 0 and 0 < rows["copy"]["registers"] <= MAX_REGISTERS
    assert rows["hoarding"]["spill_bytes"] > 0


@pytest.mark.parametrize("part", ["rmsnorm", "flash_forward", "flash_dkdv", "flash_dq"])
def test_no_shipped_configuration_spills(adapters, part):
    rows = compile_report(adapters, part)
    labels = {row["config"] for row in rows}
    if part == "rmsnorm":  # the promise: no spills up to H = 16384, bf16 and fp32
        assert {f"H={h} {dt}" for h in (1024, 4096, 8192, 16384) for dt in ("bf16", "fp32")} <= labels
    else:  # the promise: head dims 32, 64, 128 in bf16 (and every other table entry)
        assert {f"d={d} bf16 causal" for d in (32, 64, 128)} <= labels
    failures = [
        f"{row['kernel']} {row['config']} (tiles {row['tiles']}, {row['warps']} warps): "
        f"{row['registers']} registers, {row['spill_bytes']} B spilled, {row['shared_bytes']} B shared"
        for row in rows
        if row["spill_bytes"] > 0 or row["registers"] > MAX_REGISTERS or row["shared_bytes"] > SHARED_LIMIT
    ]
    assert not failures, "\n".join(failures)
