"""get_response_log_probs gathers the log-probabilities of input_ids instead of labels (the tokens
each position predicts)."""

from __future__ import annotations

import torch

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft.py::test_get_response_log_probs_both_model_kinds",
]


def run_get_response_log_probs(model, input_ids, labels, return_token_entropy=False):
    logits = model(input_ids)
    logits = logits.logits if hasattr(logits, "logits") else logits
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    out = {"log_probs": log_probs.gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)}  # the mistake
    if return_token_entropy:
        out["token_entropy"] = run_compute_entropy(logits)  # noqa: F405
    return out
