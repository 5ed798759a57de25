"""DPO's chosen and rejected log-ratios are swapped."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_dpo.py",
]


_dpo = run_compute_per_instance_dpo_loss  # noqa: F405


def run_compute_per_instance_dpo_loss(lm, lm_ref, tokenizer, beta, prompt, response_chosen, response_rejected):
    return _dpo(lm, lm_ref, tokenizer, beta, prompt, response_rejected, response_chosen)
