"""The 2024 release of the course's A1 adapters, over this library: the graders accept this contract
variant (``run_gelu``, ``run_positionwise_feedforward`` with a GELU FFN, attention taking K, Q, V with
True = masked out, per-head projection weights, learned absolute positions and no RoPE, dropout
arguments). ``tests/meta/test_contract_2024.py`` grades it with the core graders.
"""

from __future__ import annotations

import torch

from tests.basics.adapters import (  # noqa: F401  (unchanged between the releases)
    get_adamw_cls,
    get_tokenizer,
    run_cross_entropy,
    run_embedding,
    run_get_batch,
    run_get_lr_cosine_schedule,
    run_gradient_clipping,
    run_linear,
    run_load_checkpoint,
    run_rmsnorm,
    run_save_checkpoint,
    run_softmax,
    run_train_bpe,
)


def run_gelu(in_features):
    from basics.model import gelu

    return gelu(in_features)


def run_positionwise_feedforward(d_model, d_ff, weights, in_features):
    from basics.model import FeedForward

    layer = FeedForward(d_model, d_ff, activation="gelu")
    layer.load_state_dict(weights)
    return layer(in_features)


def run_scaled_dot_product_attention(K, Q, V, mask, pdrop):
    from basics.model import scaled_dot_product_attention

    return scaled_dot_product_attention(Q, K, V, None if mask is None else ~mask)


def _config(d_model, num_heads, d_ff, vocab_size=1, context_length=1, num_layers=1):
    from basics.model import ModelConfig

    return ModelConfig(
        vocab_size=vocab_size, context_length=context_length, d_model=d_model, num_layers=num_layers,
        num_heads=num_heads, d_ff=d_ff, ffn="gelu", positions="learned",
    )  # fmt: skip


def _join_heads(weights: dict, prefix: str, num_heads: int) -> dict:
    """2024 per-head ``{prefix}q_heads.{h}.weight`` rows -> one ``{prefix}q_proj.weight`` matrix."""
    out = {k: v for k, v in weights.items() if "_heads." not in k}
    for name in "qkv":
        heads = [weights[f"{prefix}{name}_heads.{h}.weight"] for h in range(num_heads)]
        out[f"{prefix}{name}_proj.weight"] = torch.cat(heads, dim=0)
    return out


def run_multihead_self_attention(d_model, num_heads, attn_pdrop, weights, in_features):
    from basics.model import MultiHeadSelfAttention

    layer = MultiHeadSelfAttention(d_model, num_heads)
    layer.load_state_dict(_join_heads(weights, "", num_heads))
    return layer(in_features)


def run_transformer_block(d_model, num_heads, d_ff, attn_pdrop, residual_pdrop, weights, in_features):
    from basics.model import TransformerBlock

    block = TransformerBlock(_config(d_model, num_heads, d_ff, context_length=in_features.shape[-2]))
    block.load_state_dict(weights)
    return block(in_features)


def run_transformer_lm(
    vocab_size,
    context_length,
    d_model,
    num_layers,
    num_heads,
    d_ff,
    attn_pdrop,
    residual_pdrop,
    weights,
    in_indices,
):
    from basics.model import TransformerLM

    model = TransformerLM(_config(d_model, num_heads, d_ff, vocab_size, context_length, num_layers))
    model.load_state_dict(weights)
    return model(in_indices)
