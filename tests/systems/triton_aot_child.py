"""Child process of tests/systems/test_triton_resources.py: ahead-of-time compiles for sm_90.

Run as ``python -m tests.systems.triton_aot_child ADAPTERS PART`` in an environment without
TRITON_INTERPRET (compiling for a GPU needs triton's real, non-interpreted functions); prints one JSON
list. PART is one of the adapter's report parts, or ``canary``: two small kernels of this file, one
that fits in registers and one that must spill, to show the measurement can tell them apart.
"""

from __future__ import annotations

import json
import sys

import torch
import triton
import triton.language as tl

from tests.grading import import_adapters


@triton.jit
def _copy_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offsets, tl.load(x_ptr + offsets) * 2.0)


@triton.jit
def _hoarding_kernel(x_ptr, y_ptr, BLOCK: tl.constexpr):
    # Holds BLOCK fp32 values and their reversed order across a reduction: with one warp, 16384
    # values are 512 per thread, more than the 255 registers a thread can have.
    offsets = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets)
    total = tl.sum(x * x, axis=0)
    tl.store(y_ptr + offsets, tl.flip(x, 0) / total + x)


def canary(adapters) -> list[dict]:
    x = torch.empty(16384, device="meta")
    small = adapters.triton_launch_resources(_copy_kernel, (16,), x, x, BLOCK=1024, num_warps=4)
    hoarding = adapters.triton_launch_resources(_hoarding_kernel, (1,), x, x, BLOCK=16384, num_warps=1)
    return [dict(kernel="copy", **small), dict(kernel="hoarding", **hoarding)]


def main() -> None:
    adapters_name, part = sys.argv[1], sys.argv[2]
    adapters = import_adapters(adapters_name)
    rows = canary(adapters) if part == "canary" else adapters.triton_resource_report(part)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
