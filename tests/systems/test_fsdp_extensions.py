"""Extension graders for this library's FSDP (``systems.fsdp``): the course's own TransformerLM,
construction from different per-rank inits, prefetching, collectives per step, live memory and
checkpoints. The course-contract graders are in ``core/test_fsdp.py``.

One spawned run of 2 gloo ranks (marked slow) trains a small ``TransformerLM`` built through
``make_transformer_lm`` (so the sharded layers are the library's own ``Linear`` and ``Embedding``)
and checks, against single-process references computed on rank 0:

* different initialisations on the two ranks: training starts from rank 0's weights;
* prefetching: with it, all-gathers are issued before the previous layer's matmuls (forward and
  backward) and the numbers do not change;
* collectives per step: an all-gather per weight use in forward, another per Linear in backward
  (the gathered weight was freed), a reduce-scatter per sharded weight; gathers carry the compute
  dtype (bf16: half the bytes), gradients fp32;
* live tensor memory, measured from outside with a dispatch-mode tracker: what persists after a
  step is about half of the unsharded model + optimizer, and a step never holds more than half the
  full weights at once;
* checkpoints: a sharded checkpoint and a gathered one-file checkpoint both resume FSDP bit-exactly;
  the gathered file is a plain checkpoint that a single process continues from (to float rounding); a sharded
  checkpoint of 2 ranks refuses to load into 1 with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from tests.grading import load_adapters
from tests.systems import dist_utils as du

pytestmark = [pytest.mark.extension, pytest.mark.slow]

CONFIG = dict(
    vocab_size=128, context_length=8, d_model=64, num_layers=2, num_heads=4, d_ff=128, rope_theta=10_000.0
)
STEPS = 3
ADAMW = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)  # checkpoints: the library's AdamW
MOMENTUM = dict(lr=0.1, momentum=0.9)  # comparisons with single-process training (Adam would amplify
# the float summation-order differences of nearly cancelling gradients)
BATCH, SEQ = 4, 8
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _model(adapters, seed: int):
    torch.manual_seed(seed)
    return adapters.make_transformer_lm("reference", "reference", **CONFIG)


def _batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(500 + step)
    tokens = torch.randint(0, CONFIG["vocab_size"], (BATCH, SEQ + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def _local(step: int, rank: int, world_size: int):
    inputs, targets = _batch(step)
    return du.rank_slice(inputs, rank, world_size), du.rank_slice(targets, rank, world_size)


def _loss(logits, targets):
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _snapshot(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


def _assert_state_close(actual, expected, atol, rtol, what):
    assert actual.keys() == expected.keys(), f"{what}: keys differ"
    for name in expected:
        torch.testing.assert_close(
            actual[name], expected[name], atol=atol, rtol=rtol, msg=lambda m, name=name: f"{what} {name}: {m}"
        )


def _optimizer(params, dtype):
    return torch.optim.SGD(params, **MOMENTUM) if dtype == torch.float32 else torch.optim.SGD(params, lr=0.1)


def _train_fsdp(adapters, rank, world_size, seed) -> dict:
    fsdp = adapters.get_fsdp(_model(adapters, seed), None)
    optimizer = torch.optim.SGD(fsdp.parameters(), **MOMENTUM)
    for step in range(STEPS):
        inputs, targets = _local(step, rank, world_size)
        _loss(fsdp(inputs), targets).backward()
        adapters.fsdp_on_after_backward(fsdp, optimizer)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"full": _snapshot(adapters.fsdp_gather_full_params(fsdp))}


def _reference(adapters) -> dict:
    """Single process, whole batches, fp32 SGD with momentum, from the seed-0 init."""
    model = _model(adapters, 0)
    optimizer = torch.optim.SGD(model.parameters(), **MOMENTUM)
    for step in range(STEPS):
        inputs, targets = _batch(step)
        _loss(model(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"full": _snapshot(model.state_dict())}


# For the memory graders: wide layers, few tokens, so weights dominate activations.
WIDE = dict(
    vocab_size=256, context_length=8, d_model=128, num_layers=6, num_heads=4, d_ff=256, rope_theta=1e4
)


def _events_of_step(adapters, fsdp, optimizer, rank, world_size, step) -> dict:
    """One training step under a CollectiveLog: forward and backward event streams separately."""
    inputs, targets = _local(step, rank, world_size)
    with du.CollectiveLog() as forward_log:
        logits = fsdp(inputs)
    loss = _loss(logits, targets)
    with du.CollectiveLog() as backward_log:
        loss.backward()
        adapters.fsdp_on_after_backward(fsdp, optimizer)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        "forward": forward_log.events,
        "backward": backward_log.events,
        "calls": forward_log.calls + backward_log.calls,
    }


def _prefetch_run(adapters, rank, world_size, prefetch, dtype) -> dict:
    model = _model(adapters, 0)
    fsdp = adapters.get_fsdp_with_options(model, dtype, prefetch)
    optimizer = _optimizer(fsdp.parameters(), dtype)
    for step in range(STEPS - 1):
        _events_of_step(adapters, fsdp, optimizer, rank, world_size, step)
    events = _events_of_step(adapters, fsdp, optimizer, rank, world_size, STEPS - 1)
    full = adapters.fsdp_gather_full_params(fsdp)
    return {"events": events, "full": {k: v.detach().clone() for k, v in full.items()}}


def _live_bytes_run(adapters, rank, world_size, shard: bool) -> dict:
    """Model, wrapper and optimizer built and trained inside a LiveTensorBytes tracker."""
    tracker = du.LiveTensorBytes()
    with tracker:
        torch.manual_seed(0)
        model = adapters.make_transformer_lm("reference", "reference", **WIDE)
        wrapped = adapters.get_fsdp(model, None) if shard else model
        optimizer = torch.optim.AdamW(wrapped.parameters(), **ADAMW)
        peaks = []
        for step in range(2):
            tokens = torch.randint(
                0, WIDE["vocab_size"], (1, 5), generator=torch.Generator().manual_seed(step)
            )
            before, tracker.peak = tracker.live(), 0
            loss = _loss(wrapped(tokens[:, :-1]), tokens[:, 1:])
            loss.backward()
            if shard:
                adapters.fsdp_on_after_backward(wrapped, optimizer)
            del loss
            peaks.append(tracker.peak - before)
            optimizer.step()
        persistent = tracker.live()
    return {"persistent": persistent, "step_peak": peaks[-1]}


def _checkpoint_run(adapters, rank, world_size, directory: str) -> dict:
    """Train 2 steps, save sharded + gathered checkpoints, train on; then resume both ways."""
    adamw = adapters.get_adamw_cls()

    def fresh(seed):
        fsdp = adapters.get_fsdp(_model(adapters, seed), None)
        return fsdp, adamw(fsdp.parameters(), **ADAMW)

    def train(fsdp, optimizer, steps):
        for step in steps:
            inputs, targets = _local(step, rank, world_size)
            _loss(fsdp(inputs), targets).backward()
            adapters.fsdp_on_after_backward(fsdp, optimizer)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return {k: v.detach().clone() for k, v in adapters.fsdp_gather_full_params(fsdp).items()}

    gathered = Path(directory) / "gathered.pt"
    fsdp, optimizer = fresh(0)
    train(fsdp, optimizer, range(2))
    adapters.fsdp_save_sharded_checkpoint(fsdp, optimizer, 2, directory)
    adapters.fsdp_save_gathered_checkpoint(fsdp, optimizer, 2, gathered)
    dist.barrier()  # rank 0's gathered file is complete before anyone reads it
    continued = train(fsdp, optimizer, range(2, 4))
    results = {"continued": continued}
    fsdp, optimizer = fresh(7)
    results["sharded_iteration"] = adapters.fsdp_load_sharded_checkpoint(directory, 2, fsdp, optimizer)
    results["from_sharded"] = train(fsdp, optimizer, range(2, 4))
    fsdp, optimizer = fresh(8)
    results["gathered_iteration"] = adapters.fsdp_load_gathered_checkpoint(gathered, fsdp, optimizer)
    results["from_gathered"] = train(fsdp, optimizer, range(2, 4))
    if rank == 0:  # the gathered file is a plain checkpoint: a single process continues from it
        model = _model(adapters, 9)
        optimizer = adamw(model.parameters(), **ADAMW)
        adapters.load_plain_checkpoint(gathered, model, optimizer)
        for step in range(2, 4):
            inputs, targets = _batch(step)
            _loss(model(inputs), targets).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        results["single_from_gathered"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return results


def _extension_worker(rank: int, world_size: int, adapters_name: str, directory: str) -> dict:
    adapters = du.load_adapters(adapters_name)
    results = {"different_inits": _train_fsdp(adapters, rank, world_size, seed=rank)}
    for prefetch in (True, False):
        for name in ("float32", "bfloat16"):
            results[f"prefetch={prefetch}-{name}"] = _prefetch_run(
                adapters, rank, world_size, prefetch, DTYPES[name]
            )
    results["live_sharded"] = _live_bytes_run(adapters, rank, world_size, shard=True)
    if rank == 0:
        results["live_plain"] = _live_bytes_run(adapters, rank, world_size, shard=False)
        results["reference"] = _reference(adapters)
    results["checkpoint"] = _checkpoint_run(adapters, rank, world_size, directory)
    return results


@pytest.fixture(scope="module")
def extension(request, tmp_path_factory):
    adapters = load_adapters(request.config, "systems")

    def run(folder):
        (folder / "checkpoints").mkdir()
        du.run_on_ranks(
            _extension_worker, 2, adapters.__name__, str(folder / "checkpoints"), results_dir=folder
        )

    folder = du.once_per_session(tmp_path_factory, "fsdp_extensions", run)
    return du.load_rank_results(folder, 2), folder / "checkpoints"


def _linear_and_embedding_weights(state):
    """Names of the 2-D weights of the course's TransformerLM: the embedding, and the Linear ones."""
    matrices = [name for name, value in state.items() if value.dim() == 2]
    embeddings = [name for name in matrices if "embeddings" in name]
    return matrices, [name for name in matrices if name not in embeddings]


def test_fsdp_starts_from_rank0_weights(extension):
    results, _ = extension
    reference = results[0]["reference"]
    for rank in (0, 1):
        _assert_state_close(results[rank]["different_inits"]["full"], reference["full"], 1e-6, 1e-5, "init")


def _matmuls_before_each_gather(events):
    counts, matmuls = [], 0
    for event in events:
        if event == "mm":
            matmuls += 1
        elif event == "_allgather_base_":
            counts.append(matmuls)
    return counts


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_fsdp_prefetch_gathers_one_layer_ahead_with_the_same_numbers(extension, name):
    results, _ = extension
    for rank in (0, 1):
        ahead, plain = results[rank][f"prefetch=True-{name}"], results[rank][f"prefetch=False-{name}"]
        for key in plain["full"]:
            assert torch.equal(ahead["full"][key], plain["full"][key]), f"prefetching changed {key}"
        for phase in ("forward", "backward"):
            early = _matmuls_before_each_gather(ahead["events"][phase])
            late = _matmuls_before_each_gather(plain["events"][phase])
            assert len(early) == len(late), phase
            assert all(a <= b for a, b in zip(early, late)), (phase, early, late)
            # Without prefetching each gather waits for the previous layer's matmuls; with it,
            # most gathers are issued before them.
            assert sum(a < b for a, b in zip(early, late)) >= len(late) // 2, (phase, early, late)
    if name == "float32":
        _assert_state_close(
            results[0]["prefetch=True-float32"]["full"],
            results[0]["reference"]["full"],
            1e-6,
            1e-5,
            "prefetch",
        )


def test_fsdp_collectives_per_step(extension):
    """Per step: one all-gather per weight use in forward, one more per Linear in backward (its
    weight was freed); one reduce-scatter per sharded weight; gathers in the compute dtype."""
    results, _ = extension
    state = results[0]["reference"]["full"]
    matrices, linears = _linear_and_embedding_weights(state)
    shard_numel = {name: -(-state[name].numel() // 2) for name in matrices}  # ceil(numel / world)
    for name, element_size in (("float32", 4), ("bfloat16", 2)):
        calls = results[0][f"prefetch=True-{name}"]["events"]["calls"]
        gathers = [nbytes for op, nbytes in calls if op == "_allgather_base_"]
        scatters = [nbytes for op, nbytes in calls if op == "_reduce_scatter_base_"]
        assert len(gathers) == len(matrices) + len(linears)
        assert len(scatters) == len(matrices)
        # Full (padded) buffers: 2 shards each. Gathers in the compute dtype, gradients in fp32.
        expected = sum(2 * shard_numel[n] for n in matrices) + sum(2 * shard_numel[n] for n in linears)
        assert sum(gathers) == expected * element_size, "weights are gathered in the compute dtype"
        assert sum(scatters) == sum(2 * shard_numel[n] for n in matrices) * 4


def test_fsdp_gathered_weights_are_freed_after_use(extension):
    """Live tensor memory, measured from outside: what persists is a half share, and a training step
    never holds more than a fraction of the full weights at once (forward or backward)."""
    results, _ = extension
    plain = results[0]["live_plain"]
    weight_bytes = 4 * sum(n for n in (WIDE["vocab_size"] * WIDE["d_model"],) * 2) + 4 * WIDE[
        "num_layers"
    ] * (4 * WIDE["d_model"] ** 2 + 3 * WIDE["d_model"] * WIDE["d_ff"])
    largest = 4 * max(WIDE["vocab_size"] * WIDE["d_model"], WIDE["d_model"] * WIDE["d_ff"])
    for rank in (0, 1):
        sharded = results[rank]["live_sharded"]
        assert sharded["persistent"] <= plain["persistent"] / 2 * 1.05 + 2 * largest, (sharded, plain)
        assert sharded["step_peak"] < weight_bytes / 2, (sharded, weight_bytes)
    assert plain["persistent"] > 0.9 * 4 * weight_bytes  # the tracker sees weights, grads, moments


def test_fsdp_checkpoints_resume_exactly(extension):
    results, _ = extension
    for rank in (0, 1):
        run = results[rank]["checkpoint"]
        assert run["sharded_iteration"] == 2 and run["gathered_iteration"] == 2
        for key, value in run["continued"].items():
            assert torch.equal(run["from_sharded"][key], value), f"sharded resume: {key}"
            assert torch.equal(run["from_gathered"][key], value), f"gathered resume: {key}"
    single = results[0]["checkpoint"]["single_from_gathered"]
    # AdamW over 2 steps from different float summation orders: atol 1e-4 (see MOMENTUM).
    _assert_state_close(single, results[0]["checkpoint"]["continued"], 1e-4, 1e-3, "single from gathered")


def test_fsdp_sharded_checkpoint_refuses_another_number_of_ranks(extension, adapters):
    _, directory = extension
    fsdp = adapters.get_fsdp(_model(adapters, 0), None)  # one process: one shard
    optimizer = adapters.get_adamw_cls()(fsdp.parameters(), **ADAMW)
    with pytest.raises(ValueError, match="2 ranks"):
        adapters.fsdp_load_sharded_checkpoint(directory, 2, fsdp, optimizer)


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_fsdp_traffic_follows_the_formula(extension, adapters, name):
    results, _ = extension
    measured = du.ring_bytes_sent(results[0][f"prefetch=True-{name}"]["events"]["calls"], 2)
    element_size = {"float32": 4, "bfloat16": 2}[name]
    formula, _ = adapters.parallel_cost("fsdp", CONFIG, 2, BATCH * SEQ // 2, element_size)
    assert measured == pytest.approx(formula, rel=1e-6)
