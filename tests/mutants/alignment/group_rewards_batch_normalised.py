"""GRPO normalises rewards over the whole batch instead of within each group."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_grpo.py::test_group_normalized_rewards_unbiased_std",
    "tests/alignment/core/test_grpo.py::test_group_normalized_rewards_uses_ground_truth_and_groups_consecutively",
]


_normalize = run_compute_group_normalized_rewards  # noqa: F405


def run_compute_group_normalized_rewards(reward_fn, rollout_responses, repeated_ground_truths, group_size, advantage_eps, normalize_by_std):
    n = len(rollout_responses)  # the mistake: one "group" of the whole batch
    return _normalize(reward_fn, rollout_responses, repeated_ground_truths, n, advantage_eps, normalize_by_std)
