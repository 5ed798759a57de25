"""Heads are split as (d_head, num_heads) instead of (num_heads, d_head)."""

from __future__ import annotations

import torch.nn.functional as F

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_multihead_self_attention",
]


def run_multihead_self_attention(d_model, num_heads, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, in_features):
    *batch, seq, _ = in_features.shape
    d_head = d_model // num_heads
    split = lambda t: t.reshape(*batch, seq, d_head, num_heads).transpose(-1, -2).transpose(-3, -2)
    q, k, v = (split(in_features @ w.T) for w in (q_proj_weight, k_proj_weight, v_proj_weight))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(-3, -2).reshape(*batch, seq, d_model) @ o_proj_weight.T
