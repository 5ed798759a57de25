"""The LM skips the final RMSNorm before the output projection."""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)
from tests.basics.core.common import block_reference

KILLED_BY = [
    "tests/basics/core/test_model.py::test_transformer_lm",
]


def run_transformer_lm(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta, weights, in_indices):
    x = weights["token_embeddings.weight"][in_indices]
    for i in range(num_layers):
        x = block_reference(x, weights, num_heads, rope_theta, prefix=f"layers.{i}.")
    return x @ weights["lm_head.weight"].T  # the mistake: ln_final is never applied
