"""Graders for FSDP, tensor and pipeline parallelism in the training job (``scripts/train.py`` under
``torchrun``): this grades the command line, so it runs the script, not an adapter.

On tiny data, for each of ``--fsdp``, ``--tp 2`` and ``--pp 2`` on 2 CPU ranks, and ``--tp 2`` on 4
ranks (a 2 x 2 mesh: tensor parallelism inside data parallelism):

* the run logs the same training losses as one process on the same global batches (1e-5) and ends
  with the same weights (atol 1e-5 after 4 AdamW steps: float summation order);
* (2 ranks) resumed from its step-2 checkpoint in the same layout, it ends bit for bit where the
  uninterrupted run ends (weights, AdamW state).

Across layouts: an FSDP run's step-2 checkpoint, resumed with ``--pp 2``, ends where one process
ends (checkpoints are the single-process format, cut up afresh on loading); a checkpoint holding
only part of the optimizer state (what rank 0 writes under ``--shard-optimizer``) resumed with
``--fsdp`` stops with a one-line error naming the problem.

The runs (nine training jobs, eight under ``torchrun``: minutes on a 2-core machine) are made once
per test session (``dist_utils.once_per_session``): under pytest-xdist every worker that gets a test
of this module would otherwise build its own copy of the module fixture.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.grading import child_env
from tests.systems import dist_utils as du

pytestmark = [pytest.mark.extension, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train.py"
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
FLAGS = [
    "--vocab-size", "64", "--context-length", "16", "--d-model", "32", "--num-layers", "2",
    "--num-heads", "2", "--batch-size", "8", "--grad-accum-steps", "2", "--max-steps", "4",
    "--warmup-steps", "1", "--learning-rate", "3e-3", "--min-learning-rate", "3e-4",
    "--checkpoint-interval", "2", "--log-interval", "1", "--eval-interval", "100", "--device", "cpu",
    "--no-progress", "--no-compile", "--seed", "0", "--sample-tokens", "0",
]  # fmt: skip
MODES = {"fsdp": ["--fsdp"], "tp": ["--tp", "2"], "pp": ["--pp", "2"]}


def _run(data: Path, out_dir: Path, launcher: list[str], extra: list[str]) -> subprocess.CompletedProcess:
    command = [sys.executable, *launcher, str(SCRIPT), *FLAGS, "--train-data", str(data)]
    command += ["--out-dir", str(out_dir), *extra]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=300, env=child_env(OMP_NUM_THREADS="1")
    )


def _train(data: Path, out_dir: Path, launcher: list[str], extra: list[str]) -> None:
    done = _run(data, out_dir, launcher, extra)
    assert done.returncode == 0, f"{out_dir.name} failed:\n{done.stdout}\n{done.stderr}"


def _read(out_dir: Path) -> dict:
    """A finished run's logged losses and its last checkpoint."""
    logged = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    losses = {m["step"]: m["loss"] for m in logged if "loss" in m}
    last = sorted((out_dir / "checkpoints").glob("checkpoint_*.pt"))[-1]
    return {"losses": losses, "checkpoint": torch.load(last, weights_only=True)}


def _assert_weights_close(actual: dict, expected: dict, atol: float, what: str) -> None:
    assert actual.keys() == expected.keys(), what
    for name in expected:
        torch.testing.assert_close(
            actual[name], expected[name], atol=atol, rtol=1e-4, msg=lambda m, name=name: f"{what} {name}: {m}"
        )


def _copy_until_step_2(source: Path, target: Path) -> None:
    """A run directory as it was after step 2 (the run checkpoints every 2 steps and keeps 2)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*_00000004*"))


RUNS = ["single", *MODES, *(f"{m}-resumed" for m in MODES), "tp-x-dp", "fsdp-then-pp"]


def _run_all(root: Path) -> None:
    """Every run in :data:`RUNS`, each in ``root / name``, on the token array ``root / "train.npy"``."""
    data = root / "train.npy"
    np.save(data, np.random.default_rng(0).integers(0, 64, size=4000, dtype=np.uint16))
    _train(data, root / "single", [], [])
    for mode, flags in MODES.items():
        _train(data, root / mode, TORCHRUN, flags)
        _copy_until_step_2(root / mode, root / f"{mode}-resumed")  # as if stopped after step 2
        _train(data, root / f"{mode}-resumed", TORCHRUN, [*flags, "--resume"])
    # A (data, model) mesh: 2-way tensor parallelism inside 2-way data parallelism, on 4 ranks.
    _train(data, root / "tp-x-dp", [*TORCHRUN[:-1], "4"], ["--tp", "2"])
    # Change of layout: FSDP's checkpoint at step 2, continued as a 2-stage pipeline.
    _copy_until_step_2(root / "fsdp", root / "fsdp-then-pp")
    _train(data, root / "fsdp-then-pp", TORCHRUN, ["--pp", "2", "--resume"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = du.once_per_session(tmp_path_factory, "parallel_train", _run_all)
    return {name: _read(root / name) for name in RUNS}, root, root / "train.npy"


@pytest.mark.parametrize("mode", [*MODES, "tp-x-dp"])
def test_parallel_runs_train_like_one_process(runs, mode):
    results, _, _ = runs
    single, parallel = results["single"], results[mode]
    assert parallel["losses"].keys() == single["losses"].keys() == {1, 2, 3, 4}
    for step, loss in single["losses"].items():
        assert parallel["losses"][step] == pytest.approx(loss, abs=1e-5), f"step {step}"
    _assert_weights_close(parallel["checkpoint"]["model"], single["checkpoint"]["model"], 1e-5, mode)


@pytest.mark.parametrize("mode", list(MODES))
def test_resume_in_the_same_layout_is_bit_exact(runs, mode):
    results, _, _ = runs
    uninterrupted, resumed = results[mode]["checkpoint"], results[f"{mode}-resumed"]["checkpoint"]
    assert resumed["iteration"] == uninterrupted["iteration"] == 4
    for name, value in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], value), f"{mode}: {name}"
    for index, state in uninterrupted["optimizer"]["state"].items():
        for key, value in state.items():
            other = resumed["optimizer"]["state"][index][key]
            assert torch.equal(torch.as_tensor(other), torch.as_tensor(value)), f"{mode}: state {index} {key}"


def test_resume_in_another_layout(runs):
    results, _, _ = runs
    switched, single = results["fsdp-then-pp"], results["single"]
    assert switched["checkpoint"]["iteration"] == 4
    _assert_weights_close(switched["checkpoint"]["model"], single["checkpoint"]["model"], 1e-5, "fsdp -> pp")


def test_a_split_optimizer_state_is_refused_in_another_layout(runs):
    """What rank 0 writes under ``--shard-optimizer``: the optimizer state of its own parameters only."""
    _, root, data = runs
    out_dir = root / "split-optimizer"
    _copy_until_step_2(root / "single", out_dir)
    path = out_dir / "checkpoints" / "checkpoint_00000002.pt"
    payload = torch.load(path, weights_only=True)
    state = payload["optimizer"]["state"]
    payload["optimizer"]["state"] = {i: v for i, v in state.items() if i % 2 == 0}
    torch.save(payload, path)
    done = _run(data, out_dir, TORCHRUN, ["--fsdp", "--resume"])
    assert done.returncode != 0, done.stderr  # each rank exits 2; torchrun reports the failure as 1
    assert "optimizer state covers" in done.stderr and "layout that wrote it" in done.stderr, done.stderr
