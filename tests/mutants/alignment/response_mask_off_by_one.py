"""The response mask is aligned with input_ids instead of labels (one position too late)."""

from __future__ import annotations

import torch

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft.py::test_tokenize_prompt_and_output_hand_computed",
]

_tokenize = run_tokenize_prompt_and_output  # noqa: F405


def run_tokenize_prompt_and_output(prompt_strs, output_strs, tokenizer):
    out = dict(_tokenize(prompt_strs, output_strs, tokenizer))
    mask = out["response_mask"]
    shifted = torch.zeros_like(mask)
    shifted[:, 1:] = mask[:, :-1]  # the mistake
    out["response_mask"] = shifted
    return out
