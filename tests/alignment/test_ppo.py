"""Graders for PPO: GAE against a plain loop and hand-computed cases, the KL estimators, per-token rewards,
whitening, the clipped value and policy losses (hand-computed, with their gradients), explained variance,
and an end-to-end run that raises the reward while leaving the reference untouched."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tests.alignment.tiny import CharTokenizer

pytestmark = pytest.mark.extension


def gae_plain(rewards: list[float], values: list[float], gamma: float, lam: float) -> list[float]:
    """GAE by its definition: A_t = sum_k (gamma lam)^k delta_{t+k}, delta_t = r_t + gamma V_{t+1} - V_t."""
    n = len(rewards)
    v = values + [0.0]  # the value after the last token is 0
    deltas = [rewards[t] + gamma * v[t + 1] - v[t] for t in range(n)]
    return [sum((gamma * lam) ** k * deltas[t + k] for k in range(n - t)) for t in range(n)]


def test_gae_worked_example(adapters):
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    adv, ret = adapters.run_compute_gae(rewards, values, mask, 1.0, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.5, 0.5]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0]]))  # returns = advantages + values
    adv0, _ = adapters.run_compute_gae(rewards, values, mask, 1.0, 0.0)  # lambda 0: one-step TD errors
    torch.testing.assert_close(adv0, torch.tensor([[0.0, 0.0, 0.5]]))


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.5), (0.99, 1.0), (1.0, 0.0)])
def test_gae_matches_the_definition_on_padded_batches(adapters, gamma, lam):
    generator = torch.Generator().manual_seed(0)
    spans = [
        (3, 9),
        (0, 4),
        (5, 6),
        (2, 10),
    ]  # response tokens [start, end) of each row; the rest is prompt/pad
    rewards = torch.randn(4, 10, generator=generator)
    values = torch.randn(4, 10, generator=generator)
    mask = torch.zeros(4, 10, dtype=torch.bool)
    for row, (start, end) in enumerate(spans):
        mask[row, start:end] = True
    adv, ret = adapters.run_compute_gae(rewards, values, mask, gamma, lam)
    episodes_r = [rewards[row, start:end].tolist() for row, (start, end) in enumerate(spans)]
    episodes_v = [values[row, start:end].tolist() for row, (start, end) in enumerate(spans)]
    library_reference = adapters.run_compute_gae_reference(episodes_r, episodes_v, gamma, lam)
    for row, (start, end) in enumerate(spans):
        expected = gae_plain(episodes_r[row], episodes_v[row], gamma, lam)
        torch.testing.assert_close(adv[row, start:end], torch.tensor(expected), rtol=1e-5, atol=1e-5)
        assert library_reference[row] == pytest.approx(expected, rel=1e-5, abs=1e-5)
        torch.testing.assert_close(ret[row, start:end], adv[row, start:end] + values[row, start:end])
    assert (adv[~mask] == 0).all() and (ret[~mask] == 0).all()


def test_kl_estimators(adapters):
    lp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    torch.testing.assert_close(adapters.run_kl_penalty(lp, ref, "k1"), torch.tensor([[0.5, -1.0]]))
    # k3 = (rho - 1) - log rho with rho = pi_ref / pi
    expected = torch.tensor([[math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0]])
    k3 = adapters.run_kl_penalty(lp, ref, "k3")
    torch.testing.assert_close(k3, expected)
    assert (k3 >= 0).all()
    # both are unbiased: their mean over tokens sampled from pi approaches the exact KL(pi || ref)
    generator = torch.Generator().manual_seed(1)
    p = torch.softmax(torch.randn(6, generator=generator), 0)
    q = torch.softmax(torch.randn(6, generator=generator), 0)
    exact = float((p * (p / q).log()).sum())
    tokens = torch.multinomial(p, 200_000, replacement=True, generator=generator)
    for estimator in ("k1", "k3"):
        estimate = adapters.run_kl_penalty(p.log()[tokens], q.log()[tokens], estimator).mean()
        assert float(estimate) == pytest.approx(exact, abs=0.01), estimator
    with pytest.raises(ValueError):
        adapters.run_kl_penalty(lp, ref, "k9")


def test_per_token_rewards_put_the_score_on_the_last_response_token(adapters):
    kl = torch.tensor([[9.0, 1.0, 2.0, 9.0], [3.0, 4.0, 9.0, 9.0]])
    mask = torch.tensor([[False, True, True, False], [True, True, False, False]])
    rewards = adapters.run_per_token_rewards(torch.tensor([10.0, -1.0]), kl, mask, 0.5)
    torch.testing.assert_close(rewards, torch.tensor([[0.0, -0.5, 9.0, 0.0], [-1.5, -3.0, 0.0, 0.0]]))


def test_whiten_over_masked_tokens(adapters):
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    out = adapters.run_whiten(x, mask)
    values = out[mask]
    assert float(values.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(values.pow(2).mean()) == pytest.approx(1.0, rel=1e-4)  # population variance 1
    torch.testing.assert_close(
        values, (torch.tensor([1.0, 2, 3, 4]) - 2.5) / math.sqrt(1.25), rtol=1e-4, atol=1e-6
    )
    assert (out[~mask] == 0).all()


def test_clipped_value_loss_hand_computed(adapters):
    old = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.1, -0.5, 3.0]], requires_grad=True)
    returns = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, meta = adapters.run_clipped_value_loss(values, old, returns, mask, 0.2)
    # token 0: V=.5 -> clipped .2: max(.25, .64)=.64 (clipped wins); token 1: V=.1 inside: .81;
    # token 2: V=-.5 -> clipped -.2: max(2.25, 1.44)=2.25 (unclipped wins); token 3 masked out
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81 + 2.25) / 3, rel=1e-5)
    assert float(meta["value_clip_fraction"]) == pytest.approx(1 / 3)
    loss.backward()
    # gradient 0 where the clipped term is the max; else (V - R) / 3 (the 1/2 cancels the square's 2)
    torch.testing.assert_close(
        values.grad, torch.tensor([[0.0, -0.9 / 3, -1.5 / 3, 0.0]]), rtol=1e-5, atol=1e-6
    )


def test_ppo_policy_loss_per_token_advantages(adapters):
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    ratios = torch.tensor([[1.5, 0.5, 1.1, 1.0]])
    new = (old + ratios.log()).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, 5.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, meta = adapters.run_ppo_policy_loss(new, old, adv, mask, 0.2)
    # -min(rho A, clip(rho) A): 1.5 -> -1.2 (clipped), 0.5 -> -0.5, 1.1 with A=-1 -> 1.1
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.1) / 3, rel=1e-5)
    assert float(meta["clip_fraction"]) == pytest.approx(1 / 3)
    loss.backward()
    torch.testing.assert_close(new.grad, torch.tensor([[0.0, -0.5 / 3, 1.1 / 3, 0.0]]), rtol=1e-5, atol=1e-6)


def test_explained_variance(adapters):
    returns = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    mask = torch.tensor([[True, True, True, False]])
    assert adapters.run_explained_variance(returns.clone(), returns, mask) == pytest.approx(1.0)
    assert adapters.run_explained_variance(torch.full_like(returns, 2.0), returns, mask) == pytest.approx(0.0)
    assert adapters.run_explained_variance(-returns, returns, mask) < 0


def _first_char_reward(response: str, ground_truth: str) -> dict[str, float]:
    hit = bool(response) and response[0] in ground_truth
    return {"format_reward": 1.0, "answer_reward": float(hit), "reward": float(hit)}


@pytest.mark.slow
def test_ppo_end_to_end_raises_the_reward(adapters):
    tok = CharTokenizer()
    policy = adapters.get_transformer_lm(tok.vocab_size, 32, 32, 1, 2, 64, seed=2)
    reference = copy.deepcopy(policy).eval()
    snapshot = copy.deepcopy(reference.state_dict())
    questions = [(q, "abcdefghijklm0123456789") for q in ("x", "y", "z", "w")]
    metrics = adapters.run_train_ppo(
        policy,
        tok,
        questions,
        _first_char_reward,
        reference=reference,
        steps=12,
        rollouts_per_step=32,
        minibatch_size=16,
        microbatch_size=8,
        max_new_tokens=2,
        learning_rate=2e-2,
        value_learning_rate=1e-2,
        kl_coef=0.01,
    )
    rewards = [m["true_reward"] for m in metrics]
    assert sum(rewards[:3]) / 3 < 0.5 and sum(rewards[-3:]) / 3 > 0.8, rewards
    for m in metrics:
        assert (
            0 <= m["clip_fraction"] <= 1 and m["value_loss"] >= 0 and math.isfinite(m["explained_variance"])
        )
        assert "kl" in m and "approx_kl" in m
    assert metrics[0]["kl"] == pytest.approx(
        0.0, abs=1e-5
    )  # the first rollouts come from the reference itself
    assert metrics[-1]["kl"] > 0.05  # the policy moved away, and the KL says so
    assert all(torch.equal(snapshot[k], v) for k, v in reference.state_dict().items())
