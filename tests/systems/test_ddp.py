"""Graders for data-parallel training: naive, overlapped and bucketed DDP.

One spawned run of 2 gloo ranks (spawning costs seconds, so every variant runs in it) trains the toy
model (tied weights, a frozen layer, a buffer) for a few SGD steps, each rank on its own half of every
global batch. The test process then trains the same model alone on the whole batches and compares:

* construction broadcasts rank 0's parameters (frozen ones too) and buffers: exact;
* after N steps the parameters equal the single-process run: atol 1e-6, rtol 1e-5 (the averaged
  gradient is a different float summation order than the mean over the whole batch), and the two
  ranks are bit-identical to each other;
* gradients are averaged, not summed (checked on step 0's gradients, same tolerance);
* frozen parameters get no gradient and do not move;
* communication: a tied weight is reduced once; naive reduces after backward, the overlapped
  variants launch all their all-reduces during backward; bucketing sends one all-reduce per bucket
  (one per parameter for a tiny bucket, one in all for a huge one).

A slow test runs the training job itself: ``torchrun --standalone --nproc_per_node 2 scripts/train.py
--ddp bucketed --shard-optimizer`` for a few steps on tiny data must end where a single-process run on
the same global batches ends.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from tests.grading import load_adapters
from tests.systems import dist_utils as du

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

STEPS = 3
LR = 0.1
# (name, bucket size in MiB or None). 1e-5 MiB is 10 bytes: smaller than any parameter.
# "-accum": two micro-batches per step, the first inside no_sync (gradient accumulation).
# "wrap-X": the training job's entry point, wrap_model(model, X).
VARIANTS = [
    ("naive", None),
    ("individual", None),
    ("bucketed", 1e-5),
    ("bucketed", 0.002),
    ("bucketed", 0.004),
    ("bucketed", 100.0),
    ("individual-accum", None),
    ("bucketed-accum", 0.002),
    ("wrap-naive", None),
    ("wrap-overlap", None),
    ("wrap-bucketed", 0.002),
    ("wrap-torch", None),
]


def _variant_id(variant: tuple[str, float | None]) -> str:
    name, size = variant
    return name if size is None else f"{name}-{size}MiB"


def _kind(name: str) -> str:
    """naive | individual | bucketed | torch: which communication pattern a variant has."""
    base = name.removeprefix("wrap-").removesuffix("-accum")
    return {"overlap": "individual"}.get(base, base)


def _wrap(adapters, name, bucket_mb, model):
    if name.startswith("wrap-"):
        return adapters.wrap_model(model, name.removeprefix("wrap-"), bucket_mb or 25.0)
    if _kind(name) == "naive":
        return adapters.get_ddp_naive(model)
    if _kind(name) == "individual":
        return adapters.get_ddp_individual_parameters(model)
    return adapters.get_ddp_bucketed(model, bucket_mb)


def _after_backward(adapters, name, ddp, optimizer):
    if name.startswith("wrap-"):
        adapters.wrapped_model_on_after_backward(ddp, optimizer)
    elif _kind(name) == "naive":
        adapters.ddp_naive_on_after_backward(ddp, optimizer)
    elif _kind(name) == "individual":
        adapters.ddp_individual_parameters_on_after_backward(ddp, optimizer)
    else:
        adapters.ddp_bucketed_on_after_backward(ddp, optimizer)


def _backward(adapters, name, ddp, inputs, targets):
    """One step's backward on this rank's data: whole, or as two accumulated micro-batches."""
    if not name.endswith("-accum"):
        du.lm_loss(ddp(inputs), targets).backward()
        return
    half = inputs.shape[0] // 2
    with adapters.ddp_no_sync(ddp):
        (du.lm_loss(ddp(inputs[:half]), targets[:half]) / 2).backward()
    (du.lm_loss(ddp(inputs[half:]), targets[half:]) / 2).backward()


def _train_worker(rank: int, world_size: int, adapters_name: str) -> dict:
    """Runs on each rank: every variant in turn, counting all-reduce calls."""
    adapters = du.load_adapters(adapters_name)
    calls = [0]
    real_all_reduce = dist.all_reduce

    def counting_all_reduce(*args, **kwargs):
        calls[0] += 1
        return real_all_reduce(*args, **kwargs)

    dist.all_reduce = counting_all_reduce
    results = {}
    for name, bucket_mb in VARIANTS:
        model = du.make_model(seed=100 + rank)  # different on each rank: construction must fix that
        before = du.full_state(model)
        ddp = _wrap(adapters, name, bucket_mb, model)
        after_construction = du.full_state(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        during_backward, per_step, grads0 = [], [], None
        for step in range(STEPS):
            if _kind(name) == "bucketed" and not name.startswith("wrap-"):
                adapters.ddp_bucketed_on_train_batch_start(ddp, optimizer)
            inputs, targets = du.global_batch(step)
            inputs, targets = (
                du.rank_slice(inputs, rank, world_size),
                du.rank_slice(targets, rank, world_size),
            )
            calls[0] = 0
            _backward(adapters, name, ddp, inputs, targets)
            during_backward.append(calls[0])
            _after_backward(adapters, name, ddp, optimizer)
            per_step.append(calls[0])
            if step == 0:
                grads0 = {
                    n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()
                }
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        results[_variant_id((name, bucket_mb))] = {
            "before": before,
            "after_construction": after_construction,
            "final": du.full_state(model),
            "grads0": grads0,
            "during_backward": during_backward,
            "per_step": per_step,
        }
    dist.all_reduce = real_all_reduce
    return results


def _reference() -> dict:
    """Single process, whole batches, starting from rank 0's initialisation."""
    model = du.make_model(seed=100)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    grads0 = None
    for step in range(STEPS):
        inputs, targets = du.global_batch(step)
        du.lm_loss(model(inputs), targets).backward()
        if step == 0:
            grads0 = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"final": du.full_state(model), "grads0": grads0, "model": model}


@pytest.fixture(scope="module")
def spawned(request):
    adapters = load_adapters(request.config, "systems")
    return du.run_on_ranks(_train_worker, 2, adapters.__name__)


@pytest.fixture(scope="module")
def reference():
    return _reference()


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]  # tied weight listed once


def _assert_states_close(actual, expected, what, atol=1e-6, rtol=1e-5):
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(
            actual[key], expected[key], atol=atol, rtol=rtol, msg=lambda m, key=key: f"{what} {key}: {m}"
        )


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_construction_broadcasts_rank0_parameters_and_buffers(spawned, variant):
    key = _variant_id(variant)
    rank0, rank1 = spawned[0][key], spawned[1][key]
    # The ranks really started different (else the check below proves nothing) ...
    assert not torch.equal(rank0["before"]["fc1.weight"], rank1["before"]["fc1.weight"])
    assert not torch.equal(rank0["before"]["frozen.weight"], rank1["before"]["frozen.weight"])
    assert not torch.equal(rank0["before"]["scale"], rank1["before"]["scale"])
    # ... and after construction both hold rank 0's values, frozen weights and buffers included.
    for name, value in rank0["before"].items():
        assert torch.equal(rank0["after_construction"][name], value), f"rank 0 changed {name}"
        assert torch.equal(rank1["after_construction"][name], value), f"rank 1 did not receive {name}"


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_parameters_match_single_process_training(spawned, reference, variant):
    key = _variant_id(variant)
    rank0, rank1 = spawned[0][key], spawned[1][key]
    for name in rank0["final"]:
        assert torch.equal(rank0["final"][name], rank1["final"][name]), f"ranks diverged on {name}"
    _assert_states_close(rank0["final"], reference["final"], f"{key} final")
    # Sanity: training moved the trainable parameters, so the comparison is not vacuous.
    assert not torch.equal(reference["final"]["fc1.weight"], du.make_model(seed=100).fc1.weight.detach())


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_gradients_are_averaged_and_frozen_parameters_untouched(spawned, reference, variant):
    key = _variant_id(variant)
    for rank in (0, 1):
        grads = spawned[rank][key]["grads0"]
        assert grads["frozen.weight"] is None and grads["frozen.bias"] is None
        for name, expected in reference["grads0"].items():
            if expected is None:
                continue
            torch.testing.assert_close(
                grads[name],
                expected,
                atol=1e-6,
                rtol=1e-5,
                msg=lambda m, rank=rank, name=name: f"rank {rank} grad {name}: {m}",
            )
        final, start = spawned[rank][key]["final"], spawned[0][key]["before"]
        assert torch.equal(final["frozen.weight"], start["frozen.weight"])
        assert torch.equal(final["scale"], start["scale"])


# torch's DDP reducer calls the C++ collectives directly: nothing to count there.
@pytest.mark.parametrize("variant", [v for v in VARIANTS if _kind(v[0]) != "torch"], ids=_variant_id)
def test_all_reduce_calls(spawned, reference, variant):
    key = _variant_id(variant)
    name, bucket_mb = variant
    name = _kind(name)
    params = _trainable(reference["model"])
    num_params = len(params)  # 7: the tied embedding/lm_head weight counts once
    assert num_params == 7
    total_bytes = sum(p.numel() * p.element_size() for p in params)
    for rank in (0, 1):
        result = spawned[rank][key]
        per_step, during = result["per_step"], result["during_backward"]
        if name == "naive":
            assert during == [0] * STEPS, "naive DDP communicates only after backward"
            assert per_step == [num_params] * STEPS
        elif name == "individual":
            assert per_step == [num_params] * STEPS, "one all-reduce per parameter, tied weight once"
            assert during == per_step, "all-reduces must be launched during backward (hooks)"
        else:
            bucket_bytes = bucket_mb * 1024 * 1024
            smallest = min(p.numel() * p.element_size() for p in params)
            if bucket_bytes < smallest:
                expected = [num_params] * STEPS
            elif bucket_bytes >= total_bytes:
                expected = [1] * STEPS
            else:
                expected = None
            if expected is not None:
                assert per_step == expected
            else:
                low = math.ceil(total_bytes / bucket_bytes)
                assert all(low <= n < num_params for n in per_step), per_step
            assert during == per_step, "every bucket fills during backward and must be launched then"


# ---- single-process behaviour of the training job's entry points (no spawning) ----

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def test_init_distributed_without_torchrun_is_a_single_process(adapters, monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    info = adapters.init_distributed()
    assert (info.rank, info.world_size, info.local_rank, info.is_distributed) == (0, 1, 0, False)
    assert info.device == torch.device("cpu") or info.device.type == "cuda"
    assert not dist.is_initialized()


def test_init_distributed_rejects_an_incomplete_torchrun_environment(adapters, monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="MASTER"):
        adapters.init_distributed()
    assert not dist.is_initialized()


@pytest.mark.parametrize("variant", ["none", "naive", "overlap", "bucketed", "torch"])
def test_wrap_model_without_a_process_group_trains_like_the_bare_model(adapters, variant):
    """With one process every variant must behave as the plain model (averaging over 1 rank)."""
    assert not dist.is_initialized()
    model, bare = du.make_model(seed=3), du.make_model(seed=3)
    wrapped = adapters.wrap_model(model, variant, 1.0)
    assert wrapped.module is model
    inputs, targets = du.global_batch(0)
    torch.testing.assert_close(wrapped(inputs), bare(inputs), atol=0, rtol=0)
    du.lm_loss(wrapped(inputs), targets).backward()
    adapters.wrapped_model_on_after_backward(wrapped, None)
    du.lm_loss(bare(inputs), targets).backward()
    for (name, p), q in zip(model.named_parameters(), bare.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, atol=0, rtol=0)


def test_bad_arguments_raise_value_error(adapters):
    with pytest.raises(ValueError, match="variant"):
        adapters.wrap_model(du.make_model(seed=0), "allreduce-please", 25.0)
    with pytest.raises(ValueError, match="bucket_size_mb"):
        adapters.get_ddp_bucketed(du.make_model(seed=0), 0.0)


# ---- the training job under torchrun ----

TRAIN_FLAGS = [
    "--vocab-size", "64", "--context-length", "16", "--d-model", "32", "--num-layers", "2",
    "--num-heads", "2", "--batch-size", "8", "--max-steps", "3", "--warmup-steps", "1",
    "--learning-rate", "3e-3", "--min-learning-rate", "3e-4", "--checkpoint-interval", "3",
    "--log-interval", "1", "--device", "cpu", "--no-progress", "--no-compile", "--seed", "0",
    "--sample-tokens", "0",
]  # fmt: skip


def _run_train_script(tmp_path: Path, name: str, launcher: list[str], extra: list[str]) -> dict:
    """Run scripts/train.py (through `launcher`, e.g. torchrun) and return its final model state."""
    out_dir = tmp_path / name
    script = Path(__file__).resolve().parents[2] / "scripts" / "train.py"
    data = ["--train-data", str(tmp_path / "train.npy")]
    command = [sys.executable, *launcher, str(script), *TRAIN_FLAGS, *data, "--out-dir", str(out_dir), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}"
    logged = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    trained = [m for m in logged if "grad_norm" in m]
    assert [m["step"] for m in trained] == [1, 2, 3] and all(m["grad_norm"] > 0 for m in trained), logged
    checkpoints = [
        p for p in sorted((out_dir / "checkpoints").glob("checkpoint_*.pt")) if ".rank" not in p.name
    ]
    assert checkpoints, f"no checkpoint written by {name}"
    return torch.load(checkpoints[-1], weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "ddp_flags",
    [
        ["--ddp", "bucketed", "--bucket-size-mb", "0.01", "--shard-optimizer"],
        ["--ddp", "overlap", "--grad-accum-steps", "2"],  # accumulation: only the last micro-batch syncs
    ],
)
def test_torchrun_two_cpu_ranks_match_single_process(tmp_path, ddp_flags):
    """`torchrun --nproc_per_node 2 scripts/train.py --ddp ...` on the CPU ends with the parameters of a
    plain single-process run on the same global batches (atol 1e-5: float summation order). This grades
    the training job's command line, so it runs the script rather than an adapter."""
    generator = np.random.default_rng(0)
    np.save(tmp_path / "train.npy", generator.integers(0, 64, size=4000, dtype=np.uint16))
    single = _run_train_script(tmp_path, "single", [], [])
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    distributed = _run_train_script(tmp_path, "torchrun", launcher, ddp_flags)
    assert single.keys() == distributed.keys()
    for name, expected in single.items():
        torch.testing.assert_close(
            distributed[name], expected, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}"
        )
