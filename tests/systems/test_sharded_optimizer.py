"""Graders for optimizer-state sharding: ``ShardedOptimizer``.

One spawned run of 2 gloo ranks does two things:

1. Both ranks train the same toy model (tied weights, a frozen layer) on the same batches with a
   sharded ``torch.optim.AdamW`` -- two param groups, the second added with ``add_param_group`` and
   its own lr / weight decay. The final parameters must equal unsharded ``torch.optim.AdamW`` run in
   the same process on the same batches *exactly* (fp32, same seed: each parameter is updated by the same code), and the
   optimizer state each rank holds must be its share: the two ranks' state bytes add up to the
   unsharded state, and each holds at most half of it plus one parameter's worth (the balance a
   per-parameter assignment can reach). ``zero_grad`` must clear every gradient, owned or not.
2. Sharded AdamW on top of bucketed DDP with different data per rank matches single-process AdamW
   on the union of the data (atol 1e-5: the averaged gradient differs by float rounding, which
   Adam's normalisation can amplify slightly).
"""

from __future__ import annotations

import pytest
import torch

from tests.grading import load_adapters
from tests.systems import dist_utils as du

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

STEPS = 4
DEFAULTS = {"lr": 1e-2, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}
SECOND_GROUP = {"lr": 3e-3, "weight_decay": 0.0}


def _groups(model):
    """First group: embedding (tied with lm_head) and fc1; second: everything else, frozen included."""
    first = [model.embed.weight, model.fc1.weight, model.fc1.bias]
    rest = [p for p in model.parameters() if all(p is not q for q in first)]
    return first, rest


def _train(model, optimizer, rank=None, world_size=1, ddp=None, on_step=None):
    for step in range(STEPS):
        inputs, targets = du.global_batch(step)
        if rank is not None:
            inputs, targets = (
                du.rank_slice(inputs, rank, world_size),
                du.rank_slice(targets, rank, world_size),
            )
        du.lm_loss((ddp or model)(inputs), targets).backward()
        if on_step is not None:
            on_step()
        optimizer.step()
        optimizer.zero_grad()


def _worker(rank: int, world_size: int, adapters_name: str) -> dict:
    adapters = du.load_adapters(adapters_name)
    result = {}

    # 1. Same data on every rank, no DDP: compare with unsharded AdamW exactly.
    model = du.make_model(seed=0)
    first, rest = _groups(model)
    optimizer = adapters.get_sharded_optimizer(first, torch.optim.AdamW, **DEFAULTS)
    optimizer.add_param_group({"params": rest, **SECOND_GROUP})
    _train(model, optimizer)
    result["same_data_final"] = du.full_state(model)
    # The reference runs here too: gradients from this process's kernels (thread count, ISA) are
    # then bit-identical, so any difference comes from the optimizer.
    reference_model = du.make_model(seed=0)
    reference_first, reference_rest = _groups(reference_model)
    reference_optimizer = torch.optim.AdamW(reference_first, **DEFAULTS)
    reference_optimizer.add_param_group({"params": reference_rest, **SECOND_GROUP})
    _train(reference_model, reference_optimizer)
    result["adamw_final"] = du.full_state(reference_model)
    result["state_bytes"] = adapters.get_optimizer_state_bytes(optimizer)
    result["grads_after_zero_grad"] = [
        p.grad is None or bool(torch.all(p.grad == 0)) for p in model.parameters() if p.requires_grad
    ]

    # 2. Different data per rank, bucketed DDP averages the gradients first.
    model = du.make_model(seed=0)
    ddp = adapters.get_ddp_bucketed(model, 0.004)
    optimizer = adapters.get_sharded_optimizer(model.parameters(), torch.optim.AdamW, **DEFAULTS)

    def sync():
        adapters.ddp_bucketed_on_after_backward(ddp, optimizer)

    _train(model, optimizer, rank, world_size, ddp=ddp, on_step=sync)
    result["ddp_final"] = du.full_state(model)
    return result


def _adamw_state_bytes(optimizer):
    return sum(
        v.numel() * v.element_size()
        for s in optimizer.state.values()
        for v in s.values()
        if torch.is_tensor(v)
    )


@pytest.fixture(scope="module")
def spawned(request):
    adapters = load_adapters(request.config, "systems")
    return du.run_on_ranks(_worker, 2, adapters.__name__)


@pytest.fixture(scope="module")
def reference():
    model = du.make_model(seed=0)
    first, rest = _groups(model)
    optimizer = torch.optim.AdamW(first, **DEFAULTS)
    optimizer.add_param_group({"params": rest, **SECOND_GROUP})
    _train(model, optimizer)
    per_param = [
        sum(v.numel() * v.element_size() for v in s.values() if torch.is_tensor(v))
        for s in optimizer.state.values()
    ]
    ddp_model = du.make_model(seed=0)
    ddp_optimizer = torch.optim.AdamW(ddp_model.parameters(), **DEFAULTS)
    _train(ddp_model, ddp_optimizer)
    return {
        "final": du.full_state(model),
        "state_bytes": _adamw_state_bytes(optimizer),
        "largest_param_state": max(per_param),
        "ddp_final": du.full_state(ddp_model),
        "start": du.full_state(du.make_model(seed=0)),
    }


def test_sharded_adamw_equals_unsharded_adamw_exactly(spawned, reference):
    for rank in (0, 1):
        final, expected_state = spawned[rank]["same_data_final"], spawned[rank]["adamw_final"]
        assert final.keys() == expected_state.keys()
        for name, expected in expected_state.items():
            assert torch.equal(final[name], expected), f"rank {rank}: {name} differs from torch.optim.AdamW"
            # and the in-rank reference agrees with this process's (up to kernel rounding)
            torch.testing.assert_close(expected, reference["final"][name], atol=1e-5, rtol=1e-4)
    # Not vacuous: both groups moved (the second group has its own lr), the frozen layer did not.
    for name in ("fc1.weight", "fc2.weight", "norm.weight"):
        assert not torch.equal(reference["final"][name], reference["start"][name])
    assert torch.equal(reference["final"]["frozen.weight"], reference["start"]["frozen.weight"])


def test_optimizer_state_is_sharded(spawned, reference):
    total = reference["state_bytes"]
    per_rank = [spawned[rank]["state_bytes"] for rank in (0, 1)]
    assert sum(per_rank) == total, (
        f"each parameter's state must live on exactly one rank: {per_rank} vs {total}"
    )
    for bytes_on_rank in per_rank:
        assert 0 < bytes_on_rank <= total / 2 + reference["largest_param_state"], per_rank


def test_zero_grad_clears_every_gradient(spawned):
    for rank in (0, 1):
        assert all(spawned[rank]["grads_after_zero_grad"])


def test_sharded_optimizer_with_ddp_matches_single_process(spawned, reference):
    for rank in (0, 1):
        final = spawned[rank]["ddp_final"]
        for name, expected in reference["ddp_final"].items():
            torch.testing.assert_close(
                final[name],
                expected,
                atol=1e-5,
                rtol=1e-4,
                msg=lambda m, name=name, rank=rank: f"rank {rank} {name}: {m}",
            )
    assert torch.equal(spawned[0]["ddp_final"]["fc1.weight"], spawned[1]["ddp_final"]["fc1.weight"])
