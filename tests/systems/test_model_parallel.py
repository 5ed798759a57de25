"""Graders for tensor parallelism (Megatron) and pipeline parallelism (GPipe, 1F1B) on 2 gloo ranks.

One spawned run trains small TransformerLMs (the library's, through ``make_transformer_lm``); rank 0
also computes the single-process references in the same process.

Tensor parallelism (every rank sees the whole batch), for two models -- SwiGLU with grouped-query
attention, and a GELU FFN with tied embeddings and learned positions:

* the gathered logits, the vocab-parallel loss and the gathered gradients equal single-process ones
  (logits/grads atol 1e-5 / 1e-6, loss relative 1e-6); after 3 SGD-momentum steps the gathered weights
  match (1e-5);
* collectives per step are what the math says: one all-reduce of a (batch, seq, d_model) activation
  per sub-layer forward (+1 for the vocab-parallel embedding) and one per sub-layer backward (+1 for
  the output head's input), i.e. 1 + 2L forward and 2L + 1 backward; the loss needs at most 3 small
  all-reduces (per-token numbers); nothing of the logits' size is ever communicated, nothing is
  all-gathered during training.

Pipeline parallelism (2 stages, 4 micro-batches), GPipe and 1F1B:

* per-step losses, step-0 gradients and the weights after 3 SGD-momentum steps equal single-process
  training on the whole batches;
* activations travel by point-to-point ops: per step stage 0 sends m activations
  (micro_batch, seq, d_model) and stage 1 sends back m gradients of the same size;
* the bubble of the schedule each stage actually executed, replayed with costs F = 1, B = 2 (see
  ``dist_utils.replay_pipeline``), equals (p - 1) / (m + p - 1) for m = 1, 2, 4;
* 1F1B holds fewer micro-batches' activations than GPipe: stage 0's peak live tensor memory during a
  step with m = 4 is lower (measured from outside, with a dispatch-mode tracker).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.grading import load_adapters
from tests.systems import dist_utils as du

pytestmark = [pytest.mark.extension, pytest.mark.slow]

BASE = dict(vocab_size=256, context_length=8, d_model=32, num_layers=2, num_heads=4, d_ff=64, rope_theta=1e4)
TP_CONFIGS = {
    "swiglu-gqa": dict(BASE, num_kv_heads=2),
    "gelu-tied-learned": dict(BASE, ffn="gelu", tie_embeddings=True, positions="learned"),
}
PP_CONFIG = dict(BASE, num_layers=4)
BATCH, SEQ, STEPS = 8, 8, 3
MICROBATCHES = 4
# SGD with momentum for the multi-step comparisons: parallel and single-process gradients differ in
# float summation order (~1e-7), which Adam can blow up where a gradient nearly cancels out.
SGD = dict(lr=0.1, momentum=0.9)


def _model(adapters, config, seed=0):
    torch.manual_seed(seed)
    return adapters.make_transformer_lm("reference", "reference", **config)


def _batch(step: int, vocab: int = 256):
    generator = torch.Generator().manual_seed(900 + step)
    tokens = torch.randint(0, vocab, (BATCH, SEQ + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def _loss(logits, targets):
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _snapshot(tensors: dict) -> dict:
    return {k: v.detach().clone() for k, v in tensors.items()}


def _single_process(adapters, config) -> dict:
    """Reference: logits, loss and gradients of step 0, losses and weights after STEPS SGD steps."""
    model = _model(adapters, config)
    optimizer = torch.optim.SGD(model.parameters(), **SGD)
    result = {"losses": []}
    for step in range(STEPS):
        inputs, targets = _batch(step)
        logits = model(inputs)
        loss = _loss(logits, targets)
        loss.backward()
        if step == 0:
            result["logits"] = logits.detach().clone()
            result["grads"] = {n: p.grad.clone() for n, p in model.named_parameters()}
        result["losses"].append(loss.item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    result["state"] = _snapshot(model.state_dict())
    return result


def _tensor_parallel(adapters, config) -> dict:
    tp = adapters.get_tensor_parallel(_model(adapters, config))
    optimizer = torch.optim.SGD(tp.parameters(), **SGD)
    result = {"losses": []}
    for step in range(STEPS):
        inputs, targets = _batch(step)
        with du.CollectiveLog() as forward_log:
            local = adapters.tensor_parallel_forward(tp, inputs)
            loss = adapters.tensor_parallel_loss(tp, local, targets)
        with du.CollectiveLog() as backward_log:
            loss.backward()
        if step == 0:
            result["forward_calls"], result["backward_calls"] = forward_log.calls, backward_log.calls
            result["logits"] = adapters.tensor_parallel_gather_logits(tp, local.detach())
            result["local_vocab"] = local.shape[-1]
            result["grads"] = _snapshot(adapters.tensor_parallel_full_grads(tp))
        result["losses"].append(loss.item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    result["state"] = _snapshot(adapters.tensor_parallel_full_state_dict(tp))
    return result


def _pipeline(adapters, schedule: str) -> dict:
    pipeline = adapters.get_pipeline_parallel(_model(adapters, PP_CONFIG), MICROBATCHES, schedule)
    params = adapters.pipeline_named_parameters(pipeline)
    optimizer = torch.optim.SGD(params.values(), **SGD)
    result = {"losses": []}
    for step in range(STEPS):
        inputs, targets = _batch(step)
        with du.CollectiveLog() as log:
            loss, _ = adapters.pipeline_train_step(pipeline, inputs, targets)
        if step == 0:
            result["calls"] = log.calls
            result["grads"] = {n: p.grad.clone() for n, p in params.items()}
        result["losses"].append(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    result["state"] = _snapshot(params)
    result["orders"] = {}
    for m in (1, 2, 4):
        pipeline = adapters.get_pipeline_parallel(_model(adapters, PP_CONFIG), m, schedule)
        result["orders"][m] = adapters.pipeline_train_step(pipeline, *_batch(0))[1]
    return result


# Long sequences, narrow weights: activations dominate stage 0's memory during a step.
MEMORY_CONFIG = dict(BASE, context_length=64, num_layers=4, d_model=64, d_ff=128)


def _pipeline_peak_bytes(adapters, schedule: str) -> int:
    pipeline = adapters.get_pipeline_parallel(_model(adapters, MEMORY_CONFIG), MICROBATCHES, schedule)
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 256, (BATCH, 65), generator=generator)
    tracker = du.LiveTensorBytes()
    with tracker:
        adapters.pipeline_train_step(pipeline, tokens[:, :-1], tokens[:, 1:])
    return tracker.peak


def _worker(rank: int, world_size: int, adapters_name: str) -> dict:
    adapters = du.load_adapters(adapters_name)
    results = {f"tp-{name}": _tensor_parallel(adapters, config) for name, config in TP_CONFIGS.items()}
    for schedule in ("gpipe", "1f1b"):
        results[f"pp-{schedule}"] = _pipeline(adapters, schedule)
        results[f"pp-{schedule}-peak"] = _pipeline_peak_bytes(adapters, schedule)
    if rank == 0:
        results["reference"] = {
            name: _single_process(adapters, config) for name, config in TP_CONFIGS.items()
        }
        results["reference"]["pp"] = _single_process(adapters, PP_CONFIG)
    return results


@pytest.fixture(scope="module")
def spawned(request, tmp_path_factory):
    adapters = load_adapters(request.config, "systems")

    def run(folder):
        du.run_on_ranks(_worker, 2, adapters.__name__, results_dir=folder)

    return du.load_rank_results(du.once_per_session(tmp_path_factory, "model_parallel", run), 2)


def _close(actual, expected, atol, rtol, what):
    assert actual.keys() == expected.keys(), f"{what}: keys differ"
    for name in expected:
        torch.testing.assert_close(
            actual[name], expected[name], atol=atol, rtol=rtol, msg=lambda m, name=name: f"{what} {name}: {m}"
        )


# ---- tensor parallelism ----


@pytest.mark.parametrize("name", list(TP_CONFIGS))
def test_tensor_parallel_matches_single_process(spawned, name):
    reference = spawned[0]["reference"][name]
    for rank in (0, 1):
        run = spawned[rank][f"tp-{name}"]
        assert run["local_vocab"] == BASE["vocab_size"] // 2, "each rank computes its half of the vocabulary"
        torch.testing.assert_close(run["logits"], reference["logits"], atol=1e-5, rtol=1e-5)
        assert run["losses"][0] == pytest.approx(reference["losses"][0], rel=1e-6, abs=1e-6)
        _close(run["grads"], reference["grads"], 1e-6, 1e-5, f"rank {rank} grad")
        assert run["losses"] == pytest.approx(reference["losses"], rel=1e-5, abs=1e-5)
        _close(run["state"], reference["state"], 1e-5, 1e-4, f"rank {rank} weights")


@pytest.mark.parametrize("name", list(TP_CONFIGS))
def test_tensor_parallel_collectives_per_step(spawned, name):
    layers = BASE["num_layers"]
    activation = BATCH * SEQ * BASE["d_model"] * 4  # one fp32 (batch, seq, d_model)
    per_token = BATCH * SEQ * 4
    logits = BATCH * SEQ * BASE["vocab_size"] * 4
    for rank in (0, 1):
        run = spawned[rank][f"tp-{name}"]
        for phase, expected in (("forward", 1 + 2 * layers), ("backward", 2 * layers + 1)):
            calls = run[f"{phase}_calls"]
            assert all(op == "allreduce_" for op, _ in calls), f"{phase}: only all-reduces: {calls}"
            assert sum(nbytes == activation for _, nbytes in calls) == expected, (phase, calls)
            small = [nbytes for _, nbytes in calls if nbytes != activation]
            assert all(nbytes <= 2 * per_token for nbytes in small), f"{phase}: {calls}"
            assert max(nbytes for _, nbytes in calls) < logits / 2, "no rank's logits are ever communicated"
        assert len([c for c in run["forward_calls"] if c[1] != activation]) <= 3  # the loss's reductions
        assert not [c for c in run["backward_calls"] if c[1] != activation]


# ---- pipeline parallelism ----


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_matches_single_process(spawned, schedule):
    reference = spawned[0]["reference"]["pp"]
    stage0, stage1 = spawned[0][f"pp-{schedule}"], spawned[1][f"pp-{schedule}"]
    assert stage0["losses"] == pytest.approx(reference["losses"], abs=1e-6)
    assert stage1["losses"] == pytest.approx(reference["losses"], abs=1e-6)
    assert not stage0["grads"].keys() & stage1["grads"].keys(), "each weight lives on one stage"
    _close({**stage0["grads"], **stage1["grads"]}, reference["grads"], 1e-6, 1e-5, "step-0 grad")
    _close({**stage0["state"], **stage1["state"]}, reference["state"], 1e-5, 1e-4, "weights")


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_sends_activations_point_to_point(spawned, schedule):
    activation = (BATCH // MICROBATCHES) * SEQ * BASE["d_model"] * 4
    for rank in (0, 1):
        calls = spawned[rank][f"pp-{schedule}"]["calls"]
        sends = [nbytes for op, nbytes in calls if op == "send"]
        receives = [nbytes for op, nbytes in calls if op == "recv_"]
        # Stage 0 sends m activations and receives m gradients; stage 1 the reverse.
        assert sends.count(activation) == MICROBATCHES and receives.count(activation) == MICROBATCHES
        assert len(sends) == len(receives) == MICROBATCHES, calls


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_bubble_follows_the_formula(spawned, schedule):
    stages = 2
    for m, _ in spawned[0][f"pp-{schedule}"]["orders"].items():
        orders = [spawned[rank][f"pp-{schedule}"]["orders"][m] for rank in range(stages)]
        for order in orders:
            assert sorted(order) == sorted([("F", i) for i in range(m)] + [("B", i) for i in range(m)])
        assert du.replay_pipeline(orders) == pytest.approx((stages - 1) / (m + stages - 1), abs=1e-9)


def test_one_f_one_b_holds_fewer_activations_than_gpipe(spawned):
    gpipe, one_f_one_b = spawned[0]["pp-gpipe-peak"], spawned[0]["pp-1f1b-peak"]
    assert one_f_one_b < 0.85 * gpipe, (one_f_one_b, gpipe)


# ---- the cost formulas against the measured traffic ----


@pytest.mark.parametrize("name", list(TP_CONFIGS))
def test_tensor_parallel_traffic_follows_the_formula(spawned, adapters, name):
    run = spawned[0][f"tp-{name}"]
    measured = du.ring_bytes_sent(run["forward_calls"] + run["backward_calls"], 2)
    formula, _ = adapters.parallel_cost("tp", TP_CONFIGS[name], 2, BATCH * SEQ)
    assert measured == pytest.approx(formula, rel=0.02)  # the loss's per-token reductions on top


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_traffic_follows_the_formula(spawned, adapters, schedule):
    formula, _ = adapters.parallel_cost("pp", PP_CONFIG, 2, BATCH * SEQ)
    for rank in (0, 1):
        measured = du.ring_bytes_sent(spawned[rank][f"pp-{schedule}"]["calls"], 2)
        assert measured == pytest.approx(formula, rel=0.01)
