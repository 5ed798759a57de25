"""The causal mask lets each token see the next one (triu with diagonal=2)."""

from __future__ import annotations

import math

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_model.py::test_multihead_self_attention",
    "tests/basics/core/test_model.py::test_transformer_lm_is_causal",
]


def _attend(x, wq, wk, wv, wo, num_heads, rope=None):
    *batch, seq, d_model = x.shape
    d_head = d_model // num_heads
    split = lambda t: t.reshape(*batch, seq, num_heads, d_head).transpose(-3, -2)
    q, k, v = split(x @ wq.T), split(x @ wk.T), split(x @ wv.T)
    if rope is not None:
        q, k = rope(q), rope(k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=2)  # the mistake: should be 1
    out = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ v
    return out.transpose(-3, -2).reshape(*batch, seq, d_model) @ wo.T


def run_multihead_self_attention(d_model, num_heads, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, in_features):
    return _attend(in_features, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, num_heads)


def run_transformer_lm(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta, weights, in_indices):
    import torch.nn.functional as F

    from tests.basics.core.common import rope_reference

    x = weights["token_embeddings.weight"][in_indices]
    rope = lambda t: rope_reference(t, torch.arange(t.shape[-2]), rope_theta)
    for i in range(num_layers):
        w = lambda n, i=i: weights[f"layers.{i}.{n}.weight"]
        h = F.rms_norm(x, (d_model,), w("ln1"), 1e-5)
        x = x + _attend(h, w("attn.q_proj"), w("attn.k_proj"), w("attn.v_proj"), w("attn.output_proj"), num_heads, rope)
        h = F.rms_norm(x, (d_model,), w("ln2"), 1e-5)
        x = x + (F.silu(h @ w("ffn.w1").T) * (h @ w("ffn.w3").T)) @ w("ffn.w2").T
    return F.rms_norm(x, (d_model,), weights["ln_final.weight"], 1e-5) @ weights["lm_head.weight"].T
