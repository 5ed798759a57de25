"""Grader for expert iteration's divergence guard: a non-finite loss in a round's SFT stops the run with
``TrainingDiverged`` naming the round and the last good round checkpoint, and nothing NaN is written.
(SFT, DPO, GRPO, the reward model and PPO are graded in test_robustness.py.)"""

from __future__ import annotations

import pytest
import torch

from tests.alignment.test_robustness import _tensors
from tests.alignment.tiny import CharTokenizer

pytestmark = pytest.mark.extension

ROUND = {"questions_per_iteration": 2, "samples_per_question": 2, "max_new_tokens": 2, "sft_steps": 2}


def _accept_all(response, ground_truth):
    """Every sample is kept, so every round runs the same number of SFT steps."""
    return {"format_reward": 1.0, "answer_reward": 1.0, "reward": 1.0}


def _poison_training_forwards(model, bad_call: int | None) -> list[int]:
    """Count ``model``'s forwards that build a graph (SFT, not sampling); from the ``bad_call``-th on its
    logits are NaN."""
    calls = [0]

    def hook(module, inputs, output):
        if not torch.is_grad_enabled():
            return None
        calls[0] += 1
        return output * float("nan") if bad_call is not None and calls[0] >= bad_call else None

    model.register_forward_hook(hook)
    return calls


def _run(adapters, tmp_path, bad_call, rounds):
    tok = CharTokenizer()
    model = adapters.get_transformer_lm(tok.vocab_size, 32, 32, 1, 2, 64, seed=3)
    calls = _poison_training_forwards(model, bad_call)
    questions = [(q, "abc") for q in ("x", "y", "z")]
    config = dict(ROUND, iterations=rounds, batch_size=2, learning_rate=1e-2, checkpoint_every=1)
    return (
        model,
        calls,
        lambda: adapters.run_expert_iteration(
            model, tok, questions, _accept_all, checkpoint_dir=tmp_path, **config
        ),
    )


def test_expert_iteration_stops_on_a_nonfinite_loss(adapters, tmp_path):
    _, calls, run = _run(adapters, tmp_path / "clean", None, 2)
    assert len(run()) == 2
    per_round, rest = divmod(calls[0], 2)
    assert per_round >= 1 and rest == 0, calls
    # rounds 1-2 are fine, round 3's first SFT forward is NaN
    model, _, run = _run(adapters, tmp_path / "run", 2 * per_round + 1, 5)
    with pytest.raises(adapters.get_training_diverged()) as error:
        run()
    message = str(error.value)
    assert "round 3" in message and "checkpoint_00000002.pt" in message, message
    assert "no checkpoint was written" not in message, message  # the inner SFT's own note would mislead
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the diverged step was never applied
    saved = sorted((tmp_path / "run").glob("checkpoint_*.pt"))
    assert [p.name for p in saved][-1] == "checkpoint_00000002.pt", saved
    for path in saved:
        tensors = [t for t in _tensors(torch.load(path, weights_only=True)) if t.is_floating_point()]
        assert tensors and all(torch.isfinite(t).all() for t in tensors), path
