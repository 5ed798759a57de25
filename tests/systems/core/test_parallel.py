"""Core graders for assignment 2's parallel training, through the course's adapters: DDP with one
all-reduce per parameter and bucketed DDP (2025 release), and the sharded optimizer (ZeRO-1).

One spawned run of 2 gloo ranks on the CPU trains a toy model (a tied weight, a frozen layer, a
buffer) for 3 SGD steps, each rank on its own half of every global batch; the parameters must end
where a single process training on the whole batches ends (atol 1e-6: float summation order), and
the two ranks must agree bit for bit. Construction must broadcast rank 0's parameters and buffers.
The sharded AdamW must end where torch.optim.AdamW ends on the same data (atol 1e-6).
"""

from __future__ import annotations

import pytest
import torch

from tests.grading import load_adapters
from tests.systems import dist_utils as du

pytestmark = pytest.mark.core
STEPS, LR = 3, 0.1
VARIANTS = ["individual", "bucketed-tiny", "bucketed-mid", "bucketed-huge"]
BUCKET_MB = {"bucketed-tiny": 1e-5, "bucketed-mid": 0.002, "bucketed-huge": 100.0}


def _ddp_run(adapters, variant: str, rank: int, world_size: int) -> dict:
    model = du.make_model(seed=100 + rank)  # different on each rank: construction must fix that
    if variant == "individual":
        ddp = adapters.get_ddp_individual_parameters(model)
    else:
        ddp = adapters.get_ddp_bucketed(model, BUCKET_MB[variant])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(STEPS):
        if variant != "individual":
            adapters.ddp_bucketed_on_train_batch_start(ddp, optimizer)
        inputs, targets = (du.rank_slice(t, rank, world_size) for t in du.global_batch(step))
        du.lm_loss(ddp(inputs), targets).backward()
        if variant == "individual":
            adapters.ddp_individual_parameters_on_after_backward(ddp, optimizer)
        else:
            adapters.ddp_bucketed_on_after_backward(ddp, optimizer)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return du.full_state(model)


def _sharded_run(adapters) -> tuple[dict, dict]:
    model, reference = du.make_model(seed=0), du.make_model(seed=0)
    optimizer = adapters.get_sharded_optimizer(model.parameters(), torch.optim.AdamW, lr=1e-2, weight_decay=0.1)
    reference_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1)
    for m, o in ((model, optimizer), (reference, reference_optimizer)):
        for step in range(STEPS):
            inputs, targets = du.global_batch(step)  # the same data on every rank
            du.lm_loss(m(inputs), targets).backward()
            o.step()
            o.zero_grad()
    return du.full_state(model), du.full_state(reference)


def _worker(rank: int, world_size: int, adapters_name: str, part: str) -> dict:
    adapters = du.load_adapters(adapters_name)
    if part == "ddp":
        return {variant: _ddp_run(adapters, variant, rank, world_size) for variant in VARIANTS}
    return dict(zip(("sharded", "adamw"), _sharded_run(adapters)))


def _spawn(request, part: str):
    adapters = load_adapters(request.config, "systems", core=True)
    needed = (
        ["get_ddp_individual_parameters", "get_ddp_bucketed"] if part == "ddp" else ["get_sharded_optimizer"]
    )
    for name in needed:
        getattr(adapters, name)  # a missing adapter skips here, before spawning
    return du.run_on_ranks(_worker, 2, adapters.__name__, part)


@pytest.fixture(scope="module")
def ddp_runs(request):
    return _spawn(request, "ddp")


@pytest.fixture(scope="module")
def single_process() -> dict:
    model = du.make_model(seed=100)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(STEPS):
        inputs, targets = du.global_batch(step)
        du.lm_loss(model(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return du.full_state(model)


@pytest.mark.points(5, problem="ddp_overlap_individual_parameters")
def test_ddp_individual_parameters(ddp_runs, single_process):
    _check(ddp_runs, single_process, "individual")


@pytest.mark.points(5, problem="ddp_overlap_bucketed")
@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_ddp_bucketed(ddp_runs, single_process, variant):
    _check(ddp_runs, single_process, variant)


def _check(runs, expected, variant):
    rank0, rank1 = runs[0][variant], runs[1][variant]
    for name in expected:
        assert torch.equal(rank0[name], rank1[name]), f"the ranks diverged on {name}"
        torch.testing.assert_close(rank0[name], expected[name], atol=1e-6, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.points(5, problem="optimizer_state_sharding")
def test_sharded_optimizer(request):
    runs = _spawn(request, "sharded")
    for rank in (0, 1):
        for name, expected in runs[rank]["adamw"].items():
            torch.testing.assert_close(runs[rank]["sharded"][name], expected, atol=1e-6, rtol=1e-5)
