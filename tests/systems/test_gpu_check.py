"""scripts/gpu_check.py: what can be checked of it without a GPU.

The script itself: ``--list`` names every check; without CUDA it says so and exits 0; a bad flag is a
one-line error. The runner: a check that raises becomes one FAIL row and the other checks still run;
the table is aligned, one line per row. The checks' logic runs here on ``kernel_device`` (the CPU
without a GPU: the Triton kernels go through the interpreter, the "GPU" of the CPU-vs-GPU comparison
is the CPU itself and the NCCL check uses gloo) with tiny sizes, so a broken check is found before
someone spends their GPU time on it. The timings mean nothing on the CPU and are not judged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.grading import child_env

pytestmark = pytest.mark.extension

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"
TINY = dict(
    norm_rows=48,
    norm_hidden=(40,),
    attn_batch_heads=(1, 2),
    attn_seq=(24,),
    attn_head_dims=(16,),
    accuracy_seq=21,
    train_model=dict(vocab_size=128, context_length=16, d_model=32, num_layers=1, num_heads=2, d_ff=64),
    train_batch=4,
    train_steps=6,
    compile=False,
    compare_steps=3,
    timeout_s=240.0,
)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=child_env(), timeout=300
    )


def test_list_names_every_check(adapters):
    result = run_script("--list")
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.strip().splitlines()]
    assert listed == adapters.gpu_check_names()
    assert {"kernel_accuracy", "training", "cpu_vs_gpu", "nccl", "kernel_registers"} <= set(listed)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_without_cuda_it_says_so_and_exits_0():
    result = run_script()
    assert result.returncode == 0, result.stderr
    assert "no CUDA" in result.stdout


def test_bad_input_is_refused(adapters):
    result = run_script("--only", "no_such_check")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="train_steps"):
        adapters.run_gpu_checks(["environment"], torch.device("cpu"), train_steps=0)


def test_a_failing_check_is_isolated(adapters):
    def broken(config, device):
        raise RuntimeError("CUDA error: an illegal memory access\nsecond line of the message")

    def fine(config, device):
        return [adapters.gpu_check_row("fine", "case", "ok", "1 ms")]

    checks = {"broken": ("raises", broken), "fine": ("returns a row", fine)}
    rows = adapters.run_gpu_checks(["broken", "fine"], torch.device("cpu"), checks=checks)
    assert [(r["check"], r["status"]) for r in rows] == [("broken", "FAIL"), ("fine", "ok")]
    assert rows[0]["measured"] == "RuntimeError: CUDA error: an illegal memory access"


def test_table_is_aligned_one_line_per_row(adapters):
    rows = [
        dict(check="kernel_accuracy", case="rmsnorm 4x8 fp32", status="ok", measured="y 1e-07"),
        dict(check="nccl", case="one rank", status="FAIL", measured="timeout"),
    ]
    lines = adapters.format_gpu_check_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)  # header, rule, rows
    assert set(lines[1]) == {"-"}
    starts = {
        line.index(word) for line, word in zip([lines[0], lines[2], lines[3]], ["status", "ok", "FAIL"])
    }
    assert len(starts) == 1, lines  # the status column starts at the same place on every line
    assert lines[3].endswith("timeout")


def test_kernel_accuracy_check(adapters, kernel_device):
    rows = adapters.run_gpu_checks(["kernel_accuracy"], kernel_device, **TINY)
    assert len(rows) == 4  # (rmsnorm, attention) x (fp32, bf16)
    assert all(r["status"] == "ok" for r in rows), rows
    assert all("dx" in r["measured"] or "dQ" in r["measured"] for r in rows)


@pytest.mark.slow
def test_cpu_vs_gpu_and_data_parallel_checks(adapters, kernel_device):
    rows = adapters.run_gpu_checks(["cpu_vs_gpu", "nccl", "environment"], kernel_device, **TINY)
    assert [r["status"] for r in rows if r["check"] != "environment"] == ["ok"] * (len(rows) - 1), rows
    assert any(r["check"] == "nccl" and "gloo" in r["case"] or "nccl" in r["case"] for r in rows)


@pytest.mark.slow
def test_training_and_speed_checks(adapters, kernel_device):
    names = ["training", "rmsnorm_speed", "attention_speed", "kernel_registers"]
    rows = adapters.run_gpu_checks(names, kernel_device, **TINY)
    training = [r for r in rows if r["check"] == "training"]
    assert len(training) == 3, rows  # torch kernels, our kernels, their final losses compared
    assert all("graph breaks 0" in r["measured"] and "tokens/s" in r["measured"] for r in training[:2])
    assert training[2]["status"] == "ok", training[2]
    assert {r["check"] for r in rows} == set(names)
    assert not any(r["status"] == "FAIL" and r["check"] != "training" for r in rows), rows


@pytest.mark.slow
def test_training_steps_with_our_kernels_never_wait_for_the_device(adapters, kernel_device):
    # get_batch, forward/backward through our kernels, clip_gradients and AdamW: no phase reads a
    # tensor value on the host (on the CPU: found by the profiler; on a GPU: set_sync_debug_mode).
    (row,) = adapters.run_gpu_checks(["no_host_sync"], kernel_device, **TINY)
    assert row["status"] == "ok" and row["measured"] == "no host sync", row
