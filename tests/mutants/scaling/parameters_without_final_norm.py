"""The parameter count forgets the final RMSNorm's gain."""

from __future__ import annotations

from tests.scaling.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/scaling/core/test_scaling.py::test_parameter_count",
]


_count = run_transformer_parameter_count  # noqa: F405


def run_transformer_parameter_count(vocab_size, context_length, d_model, num_layers, num_heads, d_ff):
    return _count(vocab_size, context_length, d_model, num_layers, num_heads, d_ff) - d_model
