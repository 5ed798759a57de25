"""Graders for fully sharded data parallelism (2026 handout: ``get_fsdp``, ``fsdp_on_after_backward``,
``fsdp_gather_full_params``) and the 2026 generic ``get_ddp`` / ``ddp_on_after_backward``.

One spawned run of 2 gloo ranks trains a small TransformerLM (the implementation's own ``Linear``,
``Embedding`` and ``RMSNorm``, built through ``make_transformer_lm``) with AdamW for a few steps,
each rank on its half of every global batch. Rank 0 also computes the references in the same
process (same kernels, one thread), so differences come from the parallel code only:

* fp32: the per-step loss (mean over ranks) and the full parameters returned by
  ``fsdp_gather_full_params`` on *every* rank equal single-process training on the whole batches
  (atol 1e-6: the averaged gradient is a different float summation order);
* bf16 / fp16 ``compute_dtype``: logits come out in that dtype, the gathered parameters are fp32,
  and losses and parameters follow a mixed-precision emulation written here -- one fp32 master
  model whose Linear/Embedding weights are cast to the compute dtype inside the forward (autograd
  casts gradients back to fp32), AdamW in fp32 -- within tolerances that the fp32 trajectory itself
  does not meet (checked, so a run that ignores ``compute_dtype`` fails);
* memory: each rank's parameter + gradient + optimizer-state bytes are about 1/2 of the unsharded
  figure for the sharded weights (plus the small replicated norm gains);
* ``get_ddp``: the same training with plain data parallelism matches single-process training.

Extension graders (this library's extras) check construction from different per-rank inits,
prefetching (gathers issued one layer ahead, same numbers), the collectives per step and their
bytes (bf16 gathers carry half the bytes), live tensor memory (gathered weights are freed after use
in forward and backward; what persists is a shard), and checkpoints: a sharded checkpoint resumes
bit-exactly, a gathered one-file checkpoint resumes FSDP bit-exactly and single-process training to
1e-6, and a sharded checkpoint refuses a different number of ranks with a clear error.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from tests.conftest import load_adapters
from tests.systems import dist_utils as du

CONFIG = dict(
    vocab_size=128, context_length=8, d_model=64, num_layers=2, num_heads=4, d_ff=128, rope_theta=10_000.0
)
STEPS = 3
ADAMW = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
SGD_LR = 0.1
BATCH, SEQ = 4, 8
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Low-precision tolerances, measured on this model: correct implementations that reduce gradients
# in the compute dtype, accumulate embedding gradients in fp32 or also cast the norm gains differ
# from the emulation by <= 1.5e-4 (bf16) / 2e-5 (fp16) in the parameters after the steps and not at
# all in the first loss. Computing the forward in fp32 moves the first loss by >= 1.5e-4; keeping
# master weights in the compute dtype moves the parameters by >= 2e-3. Both are checked to lie
# outside the tolerances. (SGD rather than Adam here: Adam divides by the gradient's magnitude, so
# a rounding difference in a near-zero gradient can flip a whole update.)
FIRST_LOSS_TOL = {"bfloat16": 2e-5, "float16": 1e-5}
LOSS_TOL = {"bfloat16": 5e-3, "float16": 1e-3}
PARAM_TOL = {"bfloat16": 5e-4, "float16": 1e-4}


def _optimizer(params, dtype):
    """AdamW for fp32 training; SGD for the low-precision graders (see above)."""
    if dtype in (None, torch.float32):
        return torch.optim.AdamW(params, **ADAMW)
    return torch.optim.SGD(params, lr=SGD_LR)


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


def _state_bytes(params, optimizer) -> int:
    """Parameter + gradient + optimizer-state bytes held by this rank (shared tensors once)."""
    unique = {id(p): p for p in params}.values()
    total = sum(p.numel() * p.element_size() for p in unique)
    total += sum(p.grad.numel() * p.grad.element_size() for p in unique if p.grad is not None)
    for state in optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
    return total


# ---- what runs on each rank ----


def _train_fsdp(adapters, rank, world_size, dtype, seed=0, make=None, after=None) -> dict:
    model = _model(adapters, seed)
    fsdp = make(model) if make is not None else adapters.get_fsdp(model, dtype)
    optimizer = _optimizer(fsdp.parameters(), dtype)
    losses, logits_dtype, state_bytes = [], None, None
    for step in range(STEPS):
        inputs, targets = _local(step, rank, world_size)
        logits = fsdp(inputs)
        logits_dtype = logits.dtype
        loss = _loss(logits, targets)
        loss.backward()
        adapters.fsdp_on_after_backward(fsdp, optimizer)
        optimizer.step()
        if step == STEPS - 1:
            state_bytes = _state_bytes(list(fsdp.parameters()), optimizer)
            numel = sum(p.numel() for p in {id(p): p for p in fsdp.parameters()}.values())
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    full = adapters.fsdp_gather_full_params(fsdp)
    result = {
        "losses": losses,
        "dtype": logits_dtype,
        "full": {k: v.detach().clone() for k, v in full.items()},
    }
    result.update(state_bytes=state_bytes, numel=numel)
    if after is not None:
        result.update(after(fsdp, optimizer))
    return result


def _reference(adapters, dtype, emulate=None, ranks=2, master_dtype=None) -> dict:
    """Single process. ``emulate=None``: fp32 on whole batches. ``emulate=dtype``: the mixed-precision
    emulation, one rank's half batch at a time, each half's gradient computed in the compute dtype
    and summed in fp32. ``master_dtype`` rounds the weight matrices to it after each step (a wrong
    implementation: low-precision master weights)."""
    model = _model(adapters, 0)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = _optimizer(model.parameters(), dtype)
    losses = []
    for step in range(STEPS):
        if emulate is None:
            loss = _loss(model(_batch(step)[0]), _batch(step)[1])
            loss.backward()
            losses.append(loss.item())
        else:
            step_losses = []
            for rank in range(ranks):
                inputs, targets = _local(step, rank, ranks)
                # Weight matrices (Linear, Embedding) in the compute dtype; norm gains stay fp32.
                cast = {n: (p.to(emulate) if p.dim() == 2 else p) for n, p in model.named_parameters()}
                loss = _loss(torch.func.functional_call(model, cast, (inputs,)), targets)
                (loss / ranks).backward()
                step_losses.append(loss.item())
            losses.append(sum(step_losses) / ranks)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if master_dtype is not None:
            with torch.no_grad():
                for p in model.parameters():
                    if p.dim() == 2:
                        p.copy_(p.to(master_dtype))
    full = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"losses": losses, "full": full, "start": start}


def _plain_state_bytes(adapters) -> dict:
    """Bytes of an unsharded model + AdamW after one step, and how many of them are 2-D weights."""
    model = _model(adapters, 0)
    optimizer = torch.optim.AdamW(model.parameters(), **ADAMW)
    inputs, targets = _batch(0)
    _loss(model(inputs), targets).backward()
    optimizer.step()
    matrices = [p for p in model.parameters() if p.dim() == 2]
    vectors = [p for p in model.parameters() if p.dim() != 2]
    return {
        "total": _state_bytes(list(model.parameters()), optimizer),
        "matrix_params": sum(p.numel() for p in matrices),
        "vector_params": sum(p.numel() for p in vectors),
    }


def _train_ddp(adapters, rank, world_size) -> dict:
    model = _model(adapters, 0)
    ddp = adapters.get_ddp(model)
    optimizer = torch.optim.AdamW(model.parameters(), **ADAMW)
    losses = []
    for step in range(STEPS):
        inputs, targets = _local(step, rank, world_size)
        loss = _loss(ddp(inputs), targets)
        loss.backward()
        adapters.ddp_on_after_backward(ddp, optimizer)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return {"losses": losses, "full": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def _core_worker(rank: int, world_size: int, adapters_name: str) -> dict:
    torch.manual_seed(1234)  # any RNG use inside get_fsdp must not matter
    adapters = du.load_adapters(adapters_name)
    results = {name: _train_fsdp(adapters, rank, world_size, dtype) for name, dtype in DTYPES.items()}
    results["ddp"] = _train_ddp(adapters, rank, world_size)
    if rank == 0:
        results["reference"] = {"float32": _reference(adapters, torch.float32)}
        for name, dtype in DTYPES.items():
            if name != "float32":
                results["reference"][name] = _reference(adapters, dtype, emulate=dtype)
                results["reference"][f"{name}-fp32"] = _reference(adapters, dtype)  # wrong: fp32 compute
                results["reference"][f"{name}-master"] = _reference(
                    adapters, dtype, dtype, master_dtype=dtype
                )
        results["plain_bytes"] = _plain_state_bytes(adapters)
    return results


@pytest.fixture(scope="module")
def core(request):
    adapters = load_adapters(request.config, "systems")
    return du.run_on_ranks(_core_worker, 2, adapters.__name__)


def _mean_losses(results, key):
    return [sum(r[key]["losses"][i] for r in results) / len(results) for i in range(STEPS)]


def _assert_state_close(actual, expected, atol, rtol, what):
    assert actual.keys() == expected.keys(), f"{what}: keys differ"
    for name in expected:
        torch.testing.assert_close(
            actual[name], expected[name], atol=atol, rtol=rtol, msg=lambda m, name=name: f"{what} {name}: {m}"
        )


@pytest.mark.core
@pytest.mark.points(3, problem="fsdp")
def test_fsdp_fp32_matches_single_process_training(core):
    reference = core[0]["reference"]["float32"]
    assert _mean_losses(core, "float32") == pytest.approx(reference["losses"], abs=1e-6)
    for rank in (0, 1):
        full = core[rank]["float32"]["full"]
        assert all(t.dtype == torch.float32 for t in full.values())
        _assert_state_close(full, reference["full"], 1e-6, 1e-5, f"rank {rank} gathered")
    # Training moved the weights, so the comparison is not vacuous.
    assert not torch.allclose(reference["full"]["lm_head.weight"], reference["start"]["lm_head.weight"])


@pytest.mark.core
@pytest.mark.points(3, problem="fsdp_mixed_precision")
@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_fsdp_low_precision_matches_mixed_precision_emulation(core, name):
    reference = core[0]["reference"]
    emulation, fp32, low_master = reference[name], reference[f"{name}-fp32"], reference[f"{name}-master"]
    assert core[0][name]["dtype"] == DTYPES[name], "the forward must compute in compute_dtype"
    losses = _mean_losses(core, name)
    assert losses[0] == pytest.approx(emulation["losses"][0], abs=FIRST_LOSS_TOL[name])
    assert losses == pytest.approx(emulation["losses"], abs=LOSS_TOL[name])
    for rank in (0, 1):
        full = core[rank][name]["full"]
        assert all(t.dtype == torch.float32 for t in full.values()), "master weights must stay fp32"
        _assert_state_close(full, emulation["full"], PARAM_TOL[name], 0.0, f"{name} rank {rank}")
    # The grader bites: fp32 compute misses the first loss, low-precision masters miss the weights.
    assert abs(fp32["losses"][0] - emulation["losses"][0]) > 3 * FIRST_LOSS_TOL[name]
    gap = max((low_master["full"][k] - emulation["full"][k]).abs().max().item() for k in emulation["full"])
    assert gap > 3 * PARAM_TOL[name]


@pytest.mark.core
@pytest.mark.points(2, problem="fsdp")
def test_fsdp_memory_per_rank_is_a_shard(core):
    plain = core[0]["plain_bytes"]
    bytes_per_param = plain["total"] / (plain["matrix_params"] + plain["vector_params"])  # 16 (+ step)
    for rank in (0, 1):
        held = core[rank]["float32"]["state_bytes"]
        # Half the weight matrices (+ padding to equal shards: at most one element each) and the
        # replicated norm gains, with their gradients and AdamW moments.
        budget = bytes_per_param * (plain["matrix_params"] / 2 + plain["vector_params"]) * 1.02 + 1024
        assert held <= budget, f"rank {rank} holds {held} bytes; a half share is about {budget:.0f}"
    # Nothing vanished: the two ranks' parameters cover the model.
    assert core[0]["float32"]["numel"] + core[1]["float32"]["numel"] >= plain["matrix_params"]


@pytest.mark.core
@pytest.mark.points(2, problem="ddp")
def test_get_ddp_matches_single_process_training(core):
    reference = core[0]["reference"]["float32"]
    assert _mean_losses(core, "ddp") == pytest.approx(reference["losses"], abs=1e-6)
    for rank in (0, 1):
        _assert_state_close(core[rank]["ddp"]["full"], reference["full"], 1e-6, 1e-5, f"ddp rank {rank}")


# ---- extension graders: this library's FSDP extras ----

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
    from pathlib import Path

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
    results = {"different_inits": _train_fsdp(adapters, rank, world_size, torch.float32, seed=rank)}
    for prefetch in (True, False):
        for name in ("float32", "bfloat16"):
            results[f"prefetch={prefetch}-{name}"] = _prefetch_run(
                adapters, rank, world_size, prefetch, DTYPES[name]
            )
    results["live_sharded"] = _live_bytes_run(adapters, rank, world_size, shard=True)
    if rank == 0:
        results["live_plain"] = _live_bytes_run(adapters, rank, world_size, shard=False)
        results["reference"] = _reference(adapters, torch.float32)
    results["checkpoint"] = _checkpoint_run(adapters, rank, world_size, directory)
    return results


@pytest.fixture(scope="module")
def extension(request, tmp_path_factory):
    adapters = load_adapters(request.config, "systems")
    directory = tmp_path_factory.mktemp("fsdp_checkpoints")
    return du.run_on_ranks(_extension_worker, 2, adapters.__name__, str(directory)), directory


def _linear_and_embedding_weights(state):
    """Names of the 2-D weights of the course's TransformerLM: the embedding, and the Linear ones."""
    matrices = [name for name, value in state.items() if value.dim() == 2]
    embeddings = [name for name in matrices if "embeddings" in name]
    return matrices, [name for name in matrices if name not in embeddings]


@pytest.mark.extension
@pytest.mark.slow
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


@pytest.mark.extension
@pytest.mark.slow
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


@pytest.mark.extension
@pytest.mark.slow
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


@pytest.mark.extension
@pytest.mark.slow
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


@pytest.mark.extension
@pytest.mark.slow
def test_fsdp_checkpoints_resume_exactly(extension):
    results, _ = extension
    for rank in (0, 1):
        run = results[rank]["checkpoint"]
        assert run["sharded_iteration"] == 2 and run["gathered_iteration"] == 2
        for key, value in run["continued"].items():
            assert torch.equal(run["from_sharded"][key], value), f"sharded resume: {key}"
            assert torch.equal(run["from_gathered"][key], value), f"gathered resume: {key}"
    single = results[0]["checkpoint"]["single_from_gathered"]
    _assert_state_close(single, results[0]["checkpoint"]["continued"], 1e-6, 1e-5, "single from gathered")


@pytest.mark.extension
@pytest.mark.slow
def test_fsdp_sharded_checkpoint_refuses_another_number_of_ranks(extension, adapters):
    _, directory = extension
    fsdp = adapters.get_fsdp(_model(adapters, 0), None)  # one process: one shard
    optimizer = adapters.get_adamw_cls()(fsdp.parameters(), **ADAMW)
    with pytest.raises(ValueError, match="2 ranks"):
        adapters.fsdp_load_sharded_checkpoint(directory, 2, fsdp, optimizer)
