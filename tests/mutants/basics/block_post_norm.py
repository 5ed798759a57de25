"""The Transformer block normalises after each residual add (post-norm) instead of before."""

from __future__ import annotations

import torch.nn.functional as F

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)
from tests.basics.core.common import mha_reference

KILLED_BY = [
    "tests/basics/core/test_model.py::test_transformer_block",
]


def run_transformer_block(d_model, num_heads, d_ff, max_seq_len, theta, weights, in_features):
    w = lambda n: weights[f"{n}.weight"]
    x = in_features
    attn = mha_reference(x, w("attn.q_proj"), w("attn.k_proj"), w("attn.v_proj"), w("attn.output_proj"), num_heads, theta=theta)
    x = F.rms_norm(x + attn, (d_model,), w("ln1"), 1e-5)
    ffn = (F.silu(x @ w("ffn.w1").T) * (x @ w("ffn.w3").T)) @ w("ffn.w2").T
    return F.rms_norm(x + ffn, (d_model,), w("ln2"), 1e-5)
