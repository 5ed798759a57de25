"""Entropy computed as -sum(p * log p) from softmax probabilities: 0 * log 0 = NaN for very peaked
logits (the handout asks for a numerically stable logsumexp form)."""

from __future__ import annotations

import torch

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft.py::test_compute_entropy_matches_torch_distributions",
]


def run_compute_entropy(logits):
    p = torch.softmax(logits.float(), dim=-1)
    return (-(p * torch.log(p)).sum(-1)).to(logits.dtype)  # the mistake: log of an underflowed 0
