"""The embedding multiplies its output by sqrt(d_model), as in "Attention Is All You Need"; the
handout's Embedding is a plain lookup."""

from __future__ import annotations

import math

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_embedding",
]


def run_embedding(vocab_size, d_model, weights, token_ids):
    return weights[token_ids] * math.sqrt(d_model)
