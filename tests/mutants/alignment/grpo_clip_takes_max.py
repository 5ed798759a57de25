"""The GRPO-clip loss takes the max of the clipped and unclipped terms instead of the min."""

from __future__ import annotations

import torch

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_grpo.py::test_grpo_clip_loss_hand_computed",
]


def run_compute_grpo_clip_loss(advantages, policy_log_probs, old_log_probs, cliprange):
    ratio = torch.exp(policy_log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * advantages
    return -torch.maximum(unclipped, clipped), {"clipped": clipped < unclipped}  # the mistake
