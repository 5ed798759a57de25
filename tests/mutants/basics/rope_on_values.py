"""Multi-head attention with RoPE rotates the values too, not only the queries and keys."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_multihead_self_attention_with_rope",
]


def run_multihead_self_attention_with_rope(
    d_model, num_heads, max_seq_len, theta, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight,
    in_features, token_positions=None,
):  # fmt: skip
    *batch, seq, _ = in_features.shape
    d_head = d_model // num_heads
    positions = torch.arange(seq) if token_positions is None else token_positions

    def heads(weight):
        x = (in_features @ weight.T).reshape(*batch, seq, num_heads, d_head).transpose(-3, -2)
        return run_rope(d_head, theta, max_seq_len, x, positions)  # noqa: F405  (the mistake for V)

    causal = torch.tril(torch.ones(seq, seq, dtype=torch.bool))
    q, k, v = heads(q_proj_weight), heads(k_proj_weight), heads(v_proj_weight)
    out = run_scaled_dot_product_attention(q, k, v, causal)  # noqa: F405
    return out.transpose(-3, -2).reshape(*batch, seq, d_model) @ o_proj_weight.T
