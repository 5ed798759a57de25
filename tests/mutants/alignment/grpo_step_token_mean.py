"""The GRPO microbatch step averages the loss over all response tokens of the microbatch at once,
not per sequence and then over the batch."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_grpo.py::test_grpo_microbatch_train_step_per_sequence_mean",
]


def run_grpo_microbatch_train_step(
    policy_log_probs, response_mask, gradient_accumulation_steps, loss_type,
    raw_rewards=None, advantages=None, old_log_probs=None, cliprange=None,
):  # fmt: skip
    per_token, meta = run_compute_policy_gradient_loss(  # noqa: F405
        policy_log_probs, loss_type, raw_rewards, advantages, old_log_probs, cliprange
    )
    mask = response_mask.to(per_token.dtype)
    loss = (per_token * mask).sum() / mask.sum() / gradient_accumulation_steps  # the mistake: one mean
    loss.backward()
    return loss.detach(), meta
