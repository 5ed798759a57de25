"""Graders for the FLOPs and parameter accounting.

Three kinds of check: hand-computed values for small configs (the arithmetic is written out in each
test), agreement with ``ModelConfig.num_parameters`` / ``flops_per_token`` and the model's real
parameters, and agreement with the matmuls PyTorch actually executes, counted by
``torch.utils.flop_counter.FlopCounterMode`` (exact integer equality: both count 2·m·k·n per matmul).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

SMALL = dict(vocab_size=1000, context_length=128, d_model=64, num_layers=2, num_heads=4)

# Variants that change what gets counted: GQA, plain FFNs with odd widths, norms, positions, tying.
VARIANTS = [
    {},
    {"num_kv_heads": 2},
    {"num_kv_heads": 1, "d_ff": 96},
    {"ffn": "gelu"},
    {"ffn": "silu", "d_ff": 100, "norm": "layernorm"},
    {"positions": "learned", "tie_embeddings": True},
    {"norm": "none", "positions": "none"},
    {"norm_position": "post"},
]


def config_for(adapters, **overrides):
    fields = dict(vocab_size=300, context_length=24, d_model=48, num_layers=3, num_heads=6)
    fields.update(overrides)
    return adapters.make_model_config(**fields)


def test_parameters_hand_computed(adapters):
    # swiglu, d_ff = ceil(8*64/3 / 64)*64 = 192, no tying, RMSNorm, RoPE.
    # embeddings 1000*64 = 64,000; head 64*1000 = 64,000
    # per layer: q,k,v,o 4*64*64 = 16,384; ffn 3*64*192 = 36,864; norms 2*64 = 128 -> 53,376
    # 2 layers = 106,752, + final norm 64 = 106,816 non-embedding; total 234,816
    config = adapters.make_model_config(**SMALL)
    counts = adapters.run_count_parameters(config)
    assert counts == {"total": 234_816, "non_embedding": 106_816}


def test_parameters_gqa_and_plain_ffn_hand_computed(adapters):
    # d=64, 8 heads of 8, 2 kv heads -> kv_dim 16; gelu with d_ff 100; layernorm (gain + bias).
    # per layer: q,o 2*64*64 = 8,192; k,v 2*64*16 = 2,048; ffn 2*64*100 = 12,800; norms 2*128 = 256
    #   -> 23,296; 3 layers = 69,888; final norm 128 -> 70,016 non-embedding
    # tied embeddings: 500*64 = 32,000 once -> total 102,016
    config = adapters.make_model_config(
        vocab_size=500,
        context_length=32,
        d_model=64,
        num_layers=3,
        num_heads=8,
        num_kv_heads=2,
        ffn="gelu",
        d_ff=100,
        norm="layernorm",
        tie_embeddings=True,
    )
    assert adapters.run_count_parameters(config) == {"total": 102_016, "non_embedding": 70_016}


def test_forward_flops_hand_computed(adapters):
    # Per layer per token: projections 4 * 2*64*64 = 32,768; QK^T and AV 2 * 2*128*64 = 32,768;
    # swiglu 3 * 2*64*192 = 73,728 -> 139,264; 2 layers = 278,528; head 2*64*1000 = 128,000.
    config = adapters.make_model_config(**SMALL)
    assert adapters.run_forward_flops_per_token(config) == 406_528
    assert adapters.run_flops_breakdown(config) == {
        "attention_projections": 65_536,
        "attention_scores": 65_536,
        "feed_forward": 147_456,
        "output_head": 128_000,
    }


def test_forward_flops_gqa_hand_computed(adapters):
    # d=64, 8 heads, 1 kv head (kv_dim 8): q,o 2*2*64*64 = 16,384; k,v 2*2*64*8 = 2,048
    # scores at T=16: 2 * 2*16*64 = 4,096; silu d_ff 256 (4*64): 2 * 2*64*256 = 65,536
    # per layer 88,064, 1 layer; head 2*64*10 = 1,280 -> 89,344
    config = adapters.make_model_config(
        vocab_size=10, context_length=16, d_model=64, num_layers=1, num_heads=8, num_kv_heads=1, ffn="silu"
    )
    assert adapters.run_forward_flops_per_token(config) == 89_344


def test_attention_terms_scale_with_context(adapters):
    config = adapters.make_model_config(**SMALL)
    full = adapters.run_flops_breakdown(config)
    half = adapters.run_flops_breakdown(config, context_length=64)
    assert half["attention_scores"] * 2 == full["attention_scores"]
    for key in ("attention_projections", "feed_forward", "output_head"):
        assert half[key] == full[key]
    # Causal: query i sees i keys, (T+1)/2 on average -> the score terms shrink by (T+1)/(2T).
    causal = adapters.run_forward_flops_per_token(config, causal=True)
    assert causal == 406_528 - full["attention_scores"] + full["attention_scores"] * 129 // 256


@pytest.mark.parametrize(
    "overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_agrees_with_model_config_and_model(adapters, overrides):
    config = config_for(adapters, **overrides)
    counts = adapters.run_count_parameters(config)
    assert counts["total"] == config.num_parameters()
    assert counts["non_embedding"] == config.num_parameters(non_embedding=True)
    model = adapters.build_transformer(config)
    assert counts["total"] == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert adapters.run_forward_flops_per_token(config) == config.flops_per_token()
    assert adapters.run_forward_flops_per_token(config, context_length=10) == config.flops_per_token(10)


@pytest.mark.parametrize(
    "overrides", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_matches_flop_counter(adapters, overrides):
    """Forward = batch*seq*flops_per_token(seq); forward+backward = 3x forward (every matmul has an
    input-gradient and a weight-gradient matmul of the same size in the backward pass)."""
    config = config_for(adapters, **overrides)
    torch.manual_seed(0)
    model = adapters.build_transformer(config)
    batch, seq = 3, 24 if not overrides else 7  # full context once, a shorter sequence for the variants
    tokens = torch.randint(0, config.vocab_size, (batch, seq))
    per_token = adapters.run_forward_flops_per_token(config, context_length=seq)
    with FlopCounterMode(display=False) as counter:
        model(tokens)
    assert counter.get_total_flops() == batch * seq * per_token
    with FlopCounterMode(display=False) as counter:
        model(tokens).float().square().mean().backward()
    assert counter.get_total_flops() == 3 * batch * seq * per_token


def test_training_flops_and_six_nd(adapters):
    config = adapters.make_model_config(**SMALL)
    tokens = 1_000_000
    assert adapters.run_training_flops(config, tokens) == pytest.approx(3 * 406_528 * tokens, rel=1e-12)
    assert adapters.run_six_nd(config, tokens) == pytest.approx(6 * 106_816 * tokens, rel=1e-12)
    assert adapters.run_six_nd(config, tokens, non_embedding=False) == pytest.approx(
        6 * 234_816 * tokens, rel=1e-12
    )


def test_six_nd_approaches_exact_count_for_wide_models(adapters):
    """6ND misses attention scores and the head; for a wide, short-context model with a small vocab
    those are small, so 6ND (non-embedding N) comes within a few percent of the exact count."""
    wide = adapters.make_model_config(
        vocab_size=256, context_length=64, d_model=1024, num_layers=8, num_heads=16
    )
    ratio = adapters.run_six_nd(wide, 1e9) / adapters.run_training_flops(wide, 1e9)
    assert 0.95 < ratio < 1.0
    narrow = adapters.make_model_config(**SMALL)
    assert adapters.run_six_nd(narrow, 1e9) / adapters.run_training_flops(narrow, 1e9) < 0.6


def test_table_lists_every_matmul_and_the_totals(adapters):
    config = adapters.make_model_config(**SMALL)
    table = adapters.run_flops_table(config, 1_000_000)
    assert isinstance(table, str)
    lowered = table.lower()
    for word in ("q", "k", "v", "o", "head", "6"):
        assert word in lowered
    assert "406,528" in table or "406528" in table  # the forward total per token
    assert "234,816" in table or "234816" in table  # total parameters


def test_bad_context_length_is_rejected(adapters):
    config = adapters.make_model_config(**SMALL)
    with pytest.raises(ValueError):
        adapters.run_forward_flops_per_token(config, context_length=0)


@pytest.mark.extension
def test_measured_training_flops_matches_the_count(adapters):
    """The library's FlopCounterMode helper reports what PyTorch executed: forward and 3x forward."""
    config = config_for(adapters, num_kv_heads=2)
    model = adapters.build_transformer(config)
    ids = torch.randint(0, config.vocab_size, (2, 9))
    forward, total = adapters.run_measured_training_flops(model, ids)
    assert forward == 2 * 9 * adapters.run_forward_flops_per_token(config, context_length=9)
    assert total == 3 * forward
    assert all(p.grad is None for p in model.parameters())  # the measurement leaves no gradients behind
