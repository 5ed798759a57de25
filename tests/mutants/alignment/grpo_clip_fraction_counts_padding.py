"""The GRPO step reports the clip fraction over every token, padding included, not over the
response tokens."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_grpo.py::test_grpo_microbatch_train_step_clip_with_padding",
]

_step = run_grpo_microbatch_train_step  # noqa: F405


def run_grpo_microbatch_train_step(
    policy_log_probs, response_mask, gradient_accumulation_steps, loss_type,
    raw_rewards=None, advantages=None, old_log_probs=None, cliprange=None,
):  # fmt: skip
    loss, meta = _step(
        policy_log_probs, response_mask, gradient_accumulation_steps, loss_type,
        raw_rewards, advantages, old_log_probs, cliprange,
    )  # fmt: skip
    if loss_type == "grpo_clip":
        _, clip = run_compute_grpo_clip_loss(advantages, policy_log_probs.detach(), old_log_probs, cliprange)  # noqa: F405
        meta = {**meta, "clip_fraction": clip["clipped"].float().mean()}  # the mistake: padding counts
    return loss, meta
