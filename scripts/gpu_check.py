"""Does the GPU path work? One command, about 8 minutes on one H100, one table.

Runs the checks of ``systems.gpu_check`` on a CUDA device: our Triton kernels against fp64 references
(fp32 and bf16, outputs and gradients), their ``do_bench`` times against torch (``F.rms_norm``, SDPA,
``torch.compile``) with % of the GPU's peak HBM bandwidth / FLOP/s, registers and spills of every
compiled kernel, a 200-step TinyStories-shaped training run on synthetic tokens with torch's kernels
and with ours (compile time, step time, tokens/s, MFU, peak memory, graph breaks), the CPU-vs-GPU
agreement of the first losses, host-sync-free training steps, a one-rank NCCL data-parallel run, and
the kernels on a second GPU when there is one. Each check is isolated: one that fails prints FAIL with
a one-line reason and the others still run. Exit status 1 if any check failed.

Without CUDA it says so and exits 0 (what can be checked without a GPU -- registers and spills
compiled ahead of time for sm_90, no graph breaks, no host syncs -- is graded by pytest).

Needs a CUDA build of torch and triton on the GPU machine, e.g.::

    pip install torch --index-url https://download.pytorch.org/whl/cu128 && pip install -e ".[triton]"
    python scripts/gpu_check.py                        # everything, one table
    python scripts/gpu_check.py --list                 # the checks, one line each
    python scripts/gpu_check.py --only kernel_accuracy training --train-steps 50
"""

from __future__ import annotations

import argparse
import os

import torch

from basics.cli import ArgumentParser, add_config_arguments, config_from_arguments, device_name, run_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from systems.gpu_check import CHECKS, GpuCheckConfig

    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="name the checks and exit")
    parser.add_argument(
        "--only", nargs="+", choices=list(CHECKS), metavar="CHECK", help="run only these checks"
    )
    parser.add_argument(
        "--device", type=device_name, default="cuda", help="the CUDA device to check: cuda | cuda:N"
    )
    add_config_arguments(parser, GpuCheckConfig)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from systems.gpu_check import CHECKS, GpuCheckConfig, format_table, run_checks

    args = parse_args(argv)
    if args.list:
        width = max(map(len, CHECKS))
        print("\n".join(f"{name:<{width}}  {description}" for name, (description, _) in CHECKS.items()))
        return 0
    config = config_from_arguments(GpuCheckConfig, args)  # bad sizes are refused on any machine
    if torch.device(args.device).type != "cuda":
        raise ValueError(f"--device must be a CUDA device (cuda or cuda:N); got {args.device!r}")
    if not torch.cuda.is_available():
        print(
            f"no CUDA device (torch {torch.__version__}): nothing to check here. On a GPU machine install a "
            "CUDA build of torch and run this again; without one, `pytest tests/systems` grades what a CPU "
            "can check (ahead-of-time sm_90 registers and spills, graph breaks, host syncs)."
        )
        return 0
    device = torch.device(args.device)
    if os.environ.get("TRITON_INTERPRET"):
        print("warning: TRITON_INTERPRET is set: the Triton kernels run in the interpreter, not natively")

    def progress(name, rows, seconds):
        failed = sum(row.status == "FAIL" for row in rows)
        print(
            f"[{seconds:6.1f} s] {name}: {len(rows)} rows" + (f", {failed} FAILED" if failed else ""),
            flush=True,
        )

    rows = run_checks(args.only or list(CHECKS), config, device, progress=progress)
    print()
    print(format_table(rows))
    return 1 if any(row.status == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    run_main(main)
