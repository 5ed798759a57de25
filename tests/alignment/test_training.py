"""Graders for the training loops on unit 1's TransformerLM: SFT lowers the response loss, DPO raises the
preference for chosen responses, and short end-to-end GRPO runs raise the reward."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.alignment.tiny import CharTokenizer

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def tiny_lm(adapters, tok, seed=0):
    return adapters.get_transformer_lm(tok.vocab_size, 32, 32, 1, 2, 64, seed=seed)


def test_sft_loop_lowers_response_loss(adapters):
    tok = CharTokenizer()
    model = tiny_lm(adapters, tok)
    examples = [(f"{a}+{b}=", str(a + b)) for a in range(5) for b in range(5)]
    metrics = adapters.run_train_sft(model, tok, examples, steps=40, batch_size=16, learning_rate=1e-2)
    assert len(metrics) == 40
    first, last = sum(m["loss"] for m in metrics[:5]) / 5, sum(m["loss"] for m in metrics[-5:]) / 5
    assert first > 2.0 and last < 0.6 * first
    # greedy answers now end with EOS after a digit string
    out = adapters.run_sample_completions(model, tok, ["2+2="], max_new_tokens=4, temperature=0.0)
    assert out[0].isdigit()


def test_dpo_loop_raises_preference_accuracy(adapters):
    tok = CharTokenizer()
    policy = tiny_lm(adapters, tok, seed=1)
    reference = copy.deepcopy(policy)
    ref_before = copy.deepcopy(reference.state_dict())
    # chosen: the sum; rejected: the sum plus one
    pairs = [(f"{a}+{b}=", str(a + b), str(a + b + 1)) for a in range(4) for b in range(4)]
    before = adapters.run_preference_accuracy(policy, tok, pairs)
    metrics = adapters.run_train_dpo(policy, reference, tok, pairs, steps=30, beta=0.5, learning_rate=3e-3)
    after = adapters.run_preference_accuracy(policy, tok, pairs)
    assert after >= 0.9 and after > before
    assert (
        metrics[-1]["reward_accuracy"] >= 0.75 and metrics[-1]["reward_margin"] > metrics[0]["reward_margin"]
    )
    # the reference model is never updated
    assert all(torch.equal(ref_before[k], v) for k, v in reference.state_dict().items())


def first_char_reward(response: str, ground_truth: str) -> dict[str, float]:
    """1 when the response starts with one of the characters in ``ground_truth``."""
    hit = bool(response) and response[0] in ground_truth
    return {"format_reward": float(bool(response)), "answer_reward": float(hit), "reward": float(hit)}


@pytest.mark.parametrize(
    "loss_type, epochs", [("reinforce_with_baseline", 1), ("grpo_clip", 2)], ids=["reinforce", "clip"]
)
def test_grpo_end_to_end_reward_increases(adapters, loss_type, epochs):
    tok = CharTokenizer()
    policy = tiny_lm(adapters, tok, seed=2)
    targets = "abcdefghijklm0123456789"  # about a quarter of the vocabulary
    questions = [(q, targets) for q in ("x", "y", "z", "w")]
    metrics = adapters.run_train_grpo(
        policy,
        tok,
        questions,
        first_char_reward,
        steps=12,
        prompts_per_step=4,
        group_size=8,
        max_new_tokens=2,
        learning_rate=2e-2,
        loss_type=loss_type,
        epochs_per_rollout_batch=epochs,
        temperature=1.0,
    )
    rewards = [m["reward"] for m in metrics]
    assert len(rewards) == 12
    assert sum(rewards[:3]) / 3 < 0.5 and sum(rewards[-3:]) / 3 > 0.8, rewards
    assert all(
        0.0 <= m["clip_fraction"] <= 1.0 and m["entropy"] >= 0 and m["response_tokens"] > 0 for m in metrics
    )
    if loss_type == "grpo_clip":
        assert any(m["clip_fraction"] > 0 for m in metrics)  # the second epoch moves off-policy


def test_expert_iteration_raises_sample_reward(adapters):
    tok = CharTokenizer()
    policy = tiny_lm(adapters, tok, seed=4)
    questions = [(q, "abcdefghijklm0123456789") for q in ("x", "y", "z", "w")]
    metrics = adapters.run_expert_iteration(
        policy,
        tok,
        questions,
        first_char_reward,
        iterations=4,
        questions_per_iteration=4,
        samples_per_question=16,
        max_new_tokens=2,
        sft_steps=10,
        batch_size=16,
        learning_rate=1e-2,
    )
    assert len(metrics) == 4 and all(m["kept_examples"] > 0 for m in metrics)
    assert metrics[0]["sample_reward"] < 0.5 and metrics[-1]["sample_reward"] > 0.8, metrics
