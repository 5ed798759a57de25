"""The SFT microbatch step does not divide the loss by gradient_accumulation_steps."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft.py::test_sft_microbatch_train_step_loss_and_gradient",
]


_step = run_sft_microbatch_train_step  # noqa: F405


def run_sft_microbatch_train_step(policy_log_probs, response_mask, gradient_accumulation_steps, normalize_constant=1.0):
    return _step(policy_log_probs, response_mask, 1, normalize_constant)  # the mistake
