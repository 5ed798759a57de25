"""Graders for the GRPO pieces: group-normalised advantages (unbiased std), the policy-gradient losses,
masked_mean (NaN on an empty row), and the microbatch step (per-sequence mean) (alignment/grpo.py)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.grading import raises_any

pytestmark = pytest.mark.core


def numeric_reward(response: str, ground_truth: str) -> dict[str, float]:
    return {"reward": float(response), "format_reward": 1.0, "answer_reward": float(response)}


def _clip_case():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -2.0, -0.5]])
    ratios = torch.tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 1.1]])
    return torch.tensor([[1.0], [-1.0]]), old + ratios.log(), old


@pytest.mark.points(2, problem="compute_group_normalized_rewards")
def test_group_normalized_rewards_unbiased_std(adapters):
    responses = ["1", "0", "0", "2", "2", "2"]
    adv, raw, meta = adapters.run_compute_group_normalized_rewards(
        numeric_reward, responses, ["x"] * 6, 3, 1e-6, True
    )
    torch.testing.assert_close(raw, torch.tensor([1.0, 0.0, 0.0, 2.0, 2.0, 2.0]))
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)  # unbiased (n - 1) std of [1, 0, 0] = 0.5774
    expected = torch.tensor(
        [2 / 3 / (std + 1e-6), -1 / 3 / (std + 1e-6), -1 / 3 / (std + 1e-6), 0.0, 0.0, 0.0]
    )
    torch.testing.assert_close(adv, expected, atol=1e-5, rtol=1e-5)
    assert isinstance(meta, dict)
    adv_plain, _, _ = adapters.run_compute_group_normalized_rewards(
        numeric_reward, responses, ["x"] * 6, 3, 1e-6, False
    )
    torch.testing.assert_close(adv_plain, torch.tensor([2 / 3, -1 / 3, -1 / 3, 0.0, 0.0, 0.0]))


@pytest.mark.points(1, problem="compute_group_normalized_rewards")
def test_group_normalized_rewards_uses_ground_truth_and_groups_consecutively(adapters):
    def exact(response, truth):
        return {"reward": float(response == truth)}

    responses = ["4", "5", "4", "4", "7", "8"]
    truths = ["4", "4", "4", "7", "7", "7"]  # groups of 3: [1, 0, 1] and [0, 1, 0]
    adv, raw, _ = adapters.run_compute_group_normalized_rewards(exact, responses, truths, 3, 0.0, True)
    torch.testing.assert_close(raw, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0]))
    s = math.sqrt(1 / 3)
    torch.testing.assert_close(
        adv, torch.tensor([1 / 3 / s, -2 / 3 / s, 1 / 3 / s, -1 / 3 / s, 2 / 3 / s, -1 / 3 / s])
    )


@pytest.mark.points(1, problem="compute_naive_policy_gradient_loss")
def test_naive_policy_gradient_loss(adapters):
    a = torch.tensor([[2.0], [-1.0]])
    lp = torch.tensor([[-1.0, -0.5], [-2.0, -3.0]])
    torch.testing.assert_close(
        adapters.run_compute_naive_policy_gradient_loss(a, lp), torch.tensor([[2.0, 1.0], [-2.0, -3.0]])
    )


@pytest.mark.points(2, problem="compute_grpo_clip_loss")
def test_grpo_clip_loss_hand_computed(adapters):
    adv, policy, old = _clip_case()
    loss, meta = adapters.run_compute_grpo_clip_loss(adv, policy, old, 0.2)
    # A=+1: min(1.5, 1.2)=1.2*, min(.5, .8)=.5, 1.1;  A=-1: min(-1.5,-1.2)=-1.5, min(-.5,-.8)=-.8*, -1.1
    torch.testing.assert_close(
        loss, torch.tensor([[-1.2, -0.5, -1.1], [1.5, 0.8, 1.1]]), atol=1e-6, rtol=1e-6
    )
    if "clipped" in meta:  # the handout suggests logging it (any key and format may be chosen)
        assert meta["clipped"].tolist() == [[True, False, False], [False, True, False]]


@pytest.mark.points(1, problem="compute_grpo_clip_loss")
def test_grpo_clip_gradient_is_zero_where_clipped(adapters):
    adv, policy, old = _clip_case()
    policy = policy.clone().requires_grad_(True)
    loss, _ = adapters.run_compute_grpo_clip_loss(adv, policy, old, 0.2)
    loss.sum().backward()
    ratios = torch.tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 1.1]])
    expected = -adv * ratios * torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])  # d(-rho A)/dlogp = -rho A
    torch.testing.assert_close(policy.grad, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.points(1, problem="compute_policy_gradient_loss")
def test_compute_policy_gradient_loss_dispatch_and_validation(adapters):
    adv, policy, old = _clip_case()
    raw = torch.tensor([[1.0], [0.0]])
    # Every course parameter is passed (None where unused): a student's adapter need not default them.
    unused = dict(raw_rewards=None, advantages=None, old_log_probs=None, cliprange=None)
    loss, _ = adapters.run_compute_policy_gradient_loss(
        policy, "no_baseline", **unused | dict(raw_rewards=raw)
    )
    torch.testing.assert_close(loss, -raw * policy)
    loss, _ = adapters.run_compute_policy_gradient_loss(
        policy, "reinforce_with_baseline", **unused | dict(advantages=adv)
    )
    torch.testing.assert_close(loss, -adv * policy)
    loss, _ = adapters.run_compute_policy_gradient_loss(
        policy, "grpo_clip", raw_rewards=None, advantages=adv, old_log_probs=old, cliprange=0.2
    )
    torch.testing.assert_close(loss, adapters.run_compute_grpo_clip_loss(adv, policy, old, 0.2)[0])
    for kwargs in (
        {"loss_type": "no_baseline", "advantages": adv},
        {"loss_type": "reinforce_with_baseline", "raw_rewards": raw},
        {"loss_type": "grpo_clip", "advantages": adv, "cliprange": 0.2},
        {"loss_type": "grpo_clip", "advantages": adv, "old_log_probs": old},
        {"loss_type": "ppo", "advantages": adv},
    ):
        with raises_any():
            adapters.run_compute_policy_gradient_loss(policy, **unused | kwargs)


@pytest.mark.points(1, problem="masked_mean")
def test_masked_mean_and_empty_rows(adapters):
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    torch.testing.assert_close(adapters.run_masked_mean(x, mask, None), torch.tensor(2.0))
    row = adapters.run_masked_mean(x, mask, -1)
    assert row[0].item() == 2.0 and torch.isnan(row[1])  # the mean of nothing is NaN, not 0
    torch.testing.assert_close(adapters.run_masked_mean(x, mask, 0)[0], torch.tensor(1.0))
    assert torch.isnan(adapters.run_masked_mean(x, mask, 0)[1])
    assert torch.isnan(adapters.run_masked_mean(x, torch.zeros_like(mask), None))


@pytest.mark.points(2, problem="grpo_microbatch_train_step")
def test_grpo_microbatch_train_step_per_sequence_mean(adapters):
    log_probs = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, True]])
    adv = torch.tensor([[2.0], [-1.0]])
    loss, _ = adapters.run_grpo_microbatch_train_step(
        log_probs, mask, 3, "reinforce_with_baseline", None, adv, None, None
    )
    # per-token -A*logp: [2, 4, 6] and [-4, -5, -6]; sequence means 3 and -6; batch mean -1.5; / 3
    torch.testing.assert_close(loss, torch.tensor(-0.5))
    # a mean over all response tokens at once would give (2 + 4 - 6) / 3 = 0 instead
    expected_grad = torch.tensor([[-2 / 12, -2 / 12, 0.0], [0.0, 0.0, 1 / 6]])
    torch.testing.assert_close(log_probs.grad, expected_grad)


@pytest.mark.points(1, problem="grpo_microbatch_train_step")
def test_grpo_microbatch_train_step_clip_with_padding(adapters):
    adv, policy, old = _clip_case()
    policy = policy.clone().requires_grad_(True)
    mask = torch.tensor([[True, True, True], [True, True, False]])  # the last token is padding
    loss, meta = adapters.run_grpo_microbatch_train_step(policy, mask, 1, "grpo_clip", None, adv, old, 0.2)
    torch.testing.assert_close(loss, torch.tensor([(-1.2 - 0.5 - 1.1) / 3, (1.5 + 0.8) / 2]).mean())
    assert policy.grad is not None and policy.grad[1, 2] == 0  # padding gets no gradient
    if "clip_fraction" in meta:  # the handout leaves what to log open; if reported, over response tokens
        torch.testing.assert_close(torch.as_tensor(meta["clip_fraction"]).float(), torch.tensor(2 / 5))
