"""The naive policy-gradient loss is A * log pi, without the minus sign (gradient ascent on a loss
that the optimizer minimises)."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_grpo.py::test_naive_policy_gradient_loss",
]


def run_compute_naive_policy_gradient_loss(raw_rewards_or_advantages, policy_log_probs):
    return raw_rewards_or_advantages * policy_log_probs  # the mistake: no minus
