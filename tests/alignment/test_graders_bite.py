"""The extension graders of the reward model, PPO and log-likelihood scoring bite: each mutant below is
the adapters with ONE function replaced by a version holding a mistake a student could plausibly make,
and at least one of the graders named beside it must fail on it (the core graders have the same check
in ``tests/mutants``; these graders are extensions, so their mutants live here).

A mutant either re-implements the function with the mistake (a few lines of torch) or wraps the
adapter under test, so the check holds whichever implementation ``--adapters`` points at."""

from __future__ import annotations

import types

import pytest
import torch

from tests.alignment import test_likelihood, test_ppo, test_reward_model

pytestmark = pytest.mark.extension


# ---- GAE


def gae_without_lambda(rewards, values, mask, gamma, lam):
    """The running advantage decays by gamma alone (lambda forgotten): GAE(gamma, 1) whatever lambda."""
    mask_f = mask.to(values.dtype)
    advantages, carry, next_value = (
        torch.zeros_like(values),
        values.new_zeros(len(values)),
        values.new_zeros(len(values)),
    )
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        carry = (delta + gamma * carry) * mask_f[:, t]  # the mistake: no lam
        advantages[:, t] = carry
        next_value = values[:, t] * mask_f[:, t]
    return advantages, (advantages + values) * mask_f


def gae_bootstraps_past_the_end(rewards, values, mask, gamma, lam):
    """V(s_{t+1}) is read from the next position even after the episode's last token (padding)."""
    mask_f = mask.to(values.dtype)
    advantages, carry = torch.zeros_like(values), values.new_zeros(len(values))
    for t in reversed(range(values.shape[1])):
        next_value = (
            values[:, t + 1] if t + 1 < values.shape[1] else values.new_zeros(len(values))
        )  # the mistake
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        carry = (delta + gamma * lam * carry) * mask_f[:, t]
        advantages[:, t] = carry
    return advantages, (advantages + values) * mask_f


def returns_are_the_advantages(original):
    def run(rewards, values, mask, gamma, lam):
        advantages, _ = original(rewards, values, mask, gamma, lam)
        return advantages, advantages.clone()  # the mistake: R_t = A_t, without + V(s_t)

    return run


# ---- KL, per-token rewards, whitening


def k3_with_the_ratio_inverted(log_probs, ref_log_probs, estimator):
    """k3 with rho = pi / pi_ref instead of pi_ref / pi (an estimate of KL(pi_ref || pi) that is biased here)."""
    log_ratio = log_probs - ref_log_probs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio  # the mistake
    raise ValueError(estimator)


def score_on_the_first_response_token(scores, kl, mask, kl_coef):
    rewards = torch.where(mask, -kl_coef * kl, torch.zeros_like(kl))
    first = mask.float().argmax(dim=1)  # the mistake: the first response token, not the last
    rewards[torch.arange(len(scores)), first] += scores
    return rewards


def whiten_over_every_position(x, mask, eps=1e-8):
    mean, var = x.mean(), x.var(unbiased=False)  # the mistake: padding counts in the statistics
    return torch.where(mask, (x - mean) * torch.rsqrt(var + eps), torch.zeros_like(x))


# ---- losses


def _masked_mean(x, mask):
    return (x * mask).sum() / mask.sum()


def value_loss_takes_the_min(values, old_values, returns, mask, cliprange_value):
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * _masked_mean(torch.minimum(unclipped_loss, clipped_loss), mask)  # the mistake
    return loss, {"value_clip_fraction": _masked_mean((clipped_loss > unclipped_loss).float(), mask)}


def policy_loss_averaged_over_padding(log_probs, old_log_probs, advantages, mask, cliprange):
    ratio = torch.exp(log_probs - old_log_probs)
    clipped_ratio = torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    per_token = -torch.minimum(ratio * advantages, clipped_ratio * advantages)
    clipped = clipped_ratio * advantages < ratio * advantages
    stats = {"clip_fraction": _masked_mean(clipped.float(), mask), "approx_kl": torch.tensor(0.0)}
    return (per_token * mask).mean(), stats  # the mistake: divides by every position


def policy_loss_ratio_inverted(log_probs, old_log_probs, advantages, mask, cliprange):
    ratio = torch.exp(old_log_probs - log_probs)  # the mistake: pi_old / pi
    clipped_ratio = torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    per_token = -torch.minimum(ratio * advantages, clipped_ratio * advantages)
    clipped = clipped_ratio * advantages < ratio * advantages
    stats = {"clip_fraction": _masked_mean(clipped.float(), mask), "approx_kl": torch.tensor(0.0)}
    return _masked_mean(per_token, mask), stats


def bradley_terry_sides_swapped(original):
    def run(chosen_rewards, rejected_rewards):
        return original(rejected_rewards, chosen_rewards)  # the mistake

    return run


def bradley_terry_log_of_sigmoid(chosen_rewards, rejected_rewards):
    margin = chosen_rewards.float() - rejected_rewards.float()
    loss = -torch.log(torch.sigmoid(margin)).mean()  # the mistake: sigmoid underflows to 0 at margin -100
    accuracy = (margin > 0).float().mean() + 0.5 * (margin == 0).float().mean()
    return loss, {"accuracy": accuracy, "margin": margin.mean()}


# ---- log-likelihood scoring


def continuation_without_its_last_token(original):
    def run(model, tokenizer, requests, batch_size=32):
        shortened = [(c, t[:-1] if len(t) > 1 else t) for c, t in requests]  # an off-by-one slice
        return original(model, tokenizer, shortened, batch_size)

    return run


def choices_without_the_delimiter(adapters):
    """The choices are scored as ``context + choice`` (no target delimiter " ")."""

    def run(model, tokenizer, items):
        requests = [(item["context"], choice) for item in items for choice in item["choices"]]
        flat = [ll for ll, _ in adapters.run_continuation_log_likelihoods(model, tokenizer, requests)]
        return _choice_metrics(items, flat, lambda choice: len(choice))

    return run


def acc_norm_by_tokens(adapters):
    """acc_norm divides by the number of continuation tokens instead of the choice's characters."""

    def run(model, tokenizer, items):
        requests = [(item["context"], " " + choice) for item in items for choice in item["choices"]]
        flat = [ll for ll, _ in adapters.run_continuation_log_likelihoods(model, tokenizer, requests)]
        return _choice_metrics(items, flat, lambda choice: len(tokenizer.encode(" " + choice)))

    return run


def _choice_metrics(items, flat, length) -> dict:
    lls, acc, acc_norm, i = [], 0, 0, 0
    for item in items:
        scores = flat[i : i + len(item["choices"])]
        i += len(scores)
        lls.append(scores)
        normed = [s / length(c) for s, c in zip(scores, item["choices"])]
        acc += scores.index(max(scores)) == item["gold"]
        acc_norm += normed.index(max(normed)) == item["gold"]
    return {"acc": acc / len(items), "acc_norm": acc_norm / len(items), "log_likelihoods": lls}


# ---- the catalogue: (name, adapter replaced, replacement builder, graders that must fail)

GAE_GRADERS = [
    (test_ppo.test_gae_worked_example, {}),
    (test_ppo.test_gae_matches_the_definition_on_padded_batches, {"gamma": 1.0, "lam": 0.95}),
    (test_ppo.test_gae_matches_the_definition_on_padded_batches, {"gamma": 0.9, "lam": 0.5}),
]
MUTANTS = [
    ("gae_without_lambda", "run_compute_gae", lambda a: gae_without_lambda, GAE_GRADERS),
    ("gae_bootstraps_past_the_end", "run_compute_gae", lambda a: gae_bootstraps_past_the_end, GAE_GRADERS),
    ("returns_are_the_advantages", "run_compute_gae", lambda a: returns_are_the_advantages(a.run_compute_gae), GAE_GRADERS),
    ("k3_with_the_ratio_inverted", "run_kl_penalty", lambda a: k3_with_the_ratio_inverted, [(test_ppo.test_kl_estimators, {})]),
    (
        "score_on_the_first_response_token",
        "run_per_token_rewards",
        lambda a: score_on_the_first_response_token,
        [(test_ppo.test_per_token_rewards_put_the_score_on_the_last_response_token, {})],
    ),
    ("whiten_over_every_position", "run_whiten", lambda a: whiten_over_every_position, [(test_ppo.test_whiten_over_masked_tokens, {})]),
    (
        "value_loss_takes_the_min",
        "run_clipped_value_loss",
        lambda a: value_loss_takes_the_min,
        [(test_ppo.test_clipped_value_loss_hand_computed, {})],
    ),
    (
        "policy_loss_averaged_over_padding",
        "run_ppo_policy_loss",
        lambda a: policy_loss_averaged_over_padding,
        [(test_ppo.test_ppo_policy_loss_per_token_advantages, {})],
    ),
    (
        "policy_loss_ratio_inverted",
        "run_ppo_policy_loss",
        lambda a: policy_loss_ratio_inverted,
        [(test_ppo.test_ppo_policy_loss_per_token_advantages, {})],
    ),
    (
        "bradley_terry_sides_swapped",
        "run_bradley_terry_loss",
        lambda a: bradley_terry_sides_swapped(a.run_bradley_terry_loss),
        [(test_reward_model.test_bradley_terry_loss_hand_computed, {})],
    ),
    (
        "bradley_terry_log_of_sigmoid",
        "run_bradley_terry_loss",
        lambda a: bradley_terry_log_of_sigmoid,
        [(test_reward_model.test_bradley_terry_loss_is_stable_at_large_margins, {})],
    ),
    (
        "continuation_without_its_last_token",
        "run_continuation_log_likelihoods",
        lambda a: continuation_without_its_last_token(a.run_continuation_log_likelihoods),
        [(test_likelihood.test_continuation_log_likelihoods_match_a_plain_loop, {"kind": "ours"})],
    ),
    (
        "choices_without_the_delimiter",
        "run_evaluate_multiple_choice",
        choices_without_the_delimiter,
        [(test_likelihood.test_multiple_choice_accuracy_equals_a_plain_loop, {"kind": "ours"})],
    ),
    (
        "acc_norm_by_tokens",
        "run_evaluate_multiple_choice",
        acc_norm_by_tokens,
        [(test_likelihood.test_acc_norm_divides_by_choice_length, {})],
    ),
]  # fmt: skip


def _mutated(adapters, name: str, replacement):
    """A module that is ``adapters`` except for ``name``."""
    module = types.ModuleType(f"{adapters.__name__}_mutant")
    module.__dict__.update({k: v for k, v in vars(adapters).items() if not k.startswith("__")})
    setattr(module, name, replacement)
    return module


@pytest.mark.parametrize("name, adapter, build, graders", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_a_grader_fails_on_the_mutant(adapters, tmp_path, name, adapter, build, graders):
    mutant = _mutated(adapters, adapter, build(adapters))
    killed_by = []
    for i, (grader, kwargs) in enumerate(graders):
        arguments = {"adapters": mutant, **kwargs}
        if "tmp_path" in grader.__code__.co_varnames[: grader.__code__.co_argcount]:
            arguments["tmp_path"] = tmp_path / str(i)
            arguments["tmp_path"].mkdir()
        try:
            grader(**arguments)
        except (Exception, pytest.fail.Exception):  # an assertion, pytest.raises unmet, or a crash
            killed_by.append(grader.__name__)
    assert killed_by, f"no grader fails on the mutant {name}"
