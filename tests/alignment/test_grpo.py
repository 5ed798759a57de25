"""Graders for the GRPO pieces: group-normalised advantages (unbiased std), the policy-gradient losses,
masked_mean (NaN on an empty row), and the microbatch step (per-sequence mean) (alignment/grpo.py)."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def numeric_reward(response: str, ground_truth: str) -> dict[str, float]:
    return {"reward": float(response), "format_reward": 1.0, "answer_reward": float(response)}


def _clip_case():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -2.0, -0.5]])
    ratios = torch.tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 1.1]])
    return torch.tensor([[1.0], [-1.0]]), old + ratios.log(), old


