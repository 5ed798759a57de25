"""The FLOP count leaves out QK^T and AV (counts only the weight matmuls)."""

from __future__ import annotations

from tests.scaling.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/scaling/core/test_scaling.py::test_forward_flops",
]


_flops = run_transformer_forward_flops  # noqa: F405


def run_transformer_forward_flops(vocab_size, context_length, d_model, num_layers, num_heads, d_ff):
    attention = num_layers * 2 * 2 * context_length * context_length * d_model
    return _flops(vocab_size, context_length, d_model, num_layers, num_heads, d_ff) - attention
