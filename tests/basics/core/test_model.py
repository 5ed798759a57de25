"""Core graders for the Transformer LM's modules (assignment 1, section 3), through the course's adapters.

Each grader builds its inputs and weights (course state-dict names) and compares with torch built-ins
or the plain references in ``common.py``. Tolerances: fp32, 1e-5 relative per module, 1e-4 through a
whole LM. The 2024 release's functions (``run_gelu``, ``run_positionwise_feedforward``, the
K, Q, V order of attention with True = masked out, learned positions) are graded where a student's
adapters provide them instead of the current ones.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.basics.core.common import (
    block_reference,
    block_weights,
    lm_reference,
    lm_weights,
    mha_reference,
    release,
    rope_reference,
    seeded,
)

pytestmark = pytest.mark.core


@pytest.mark.points(2, problem="linear")
def test_linear(adapters):
    w = torch.randn(7, 5, generator=seeded())
    x = torch.randn(2, 3, 5, generator=seeded(1))
    torch.testing.assert_close(adapters.run_linear(5, 7, w, x), x @ w.T)


@pytest.mark.points(2, problem="embedding")
def test_embedding(adapters):
    w = torch.randn(11, 4, generator=seeded())
    ids = torch.tensor([[0, 3, 10], [10, 10, 1]])
    torch.testing.assert_close(adapters.run_embedding(11, 4, w, ids), w[ids])


@pytest.mark.points(1, problem="rmsnorm")
@pytest.mark.parametrize("shape", [(3, 7), (2, 5, 16)])
def test_rmsnorm(adapters, shape):
    x = torch.randn(*shape, generator=seeded())
    g = torch.randn(shape[-1], generator=seeded(1))
    expected = F.rms_norm(x, (shape[-1],), g, eps=1e-5)
    torch.testing.assert_close(adapters.run_rmsnorm(shape[-1], 1e-5, g, x), expected)


@pytest.mark.points(1, problem="rmsnorm")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rmsnorm_upcasts_to_fp32(adapters, dtype):
    """The handout: upcast to fp32 before squaring, return the input dtype. In fp16, 300^2 overflows."""
    x = (torch.randn(4, 64, generator=seeded()) * 300).to(dtype)
    g = (1 + 0.1 * torch.randn(64, generator=seeded(1))).to(dtype)
    out = adapters.run_rmsnorm(64, 1e-5, g, x)
    assert out.dtype == dtype
    expected = F.rms_norm(x.float(), (64,), g.float(), eps=1e-5).to(dtype)
    torch.testing.assert_close(out.float(), expected.float(), atol=1e-2, rtol=1.6e-2)  # 2 bf16 ulps


@pytest.mark.points(1, problem="positionwise_feedforward")
def test_activation(adapters):
    x = torch.linspace(-20, 20, 101)
    if release(adapters, "run_silu", "run_gelu") == "run_gelu":
        torch.testing.assert_close(adapters.run_gelu(x), F.gelu(x))
    else:
        torch.testing.assert_close(adapters.run_silu(x), F.silu(x))


@pytest.mark.points(2, problem="positionwise_feedforward")
def test_feedforward(adapters):
    d_model, d_ff = 16, 40
    w1, w2, w3 = (
        torch.randn(*s, generator=seeded(i)) / 4
        for i, s in enumerate([(d_ff, d_model), (d_model, d_ff), (d_ff, d_model)])
    )
    x = torch.randn(2, 5, d_model, generator=seeded(9))
    if release(adapters, "run_swiglu", "run_positionwise_feedforward") == "run_positionwise_feedforward":
        out = adapters.run_positionwise_feedforward(d_model, d_ff, {"w1.weight": w1, "w2.weight": w2}, x)
        torch.testing.assert_close(out, F.gelu(x @ w1.T) @ w2.T, atol=1e-5, rtol=1e-4)
        return
    expected = (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    torch.testing.assert_close(adapters.run_swiglu(d_model, d_ff, w1, w2, w3, x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.points(1, problem="softmax")
@pytest.mark.parametrize("dim", [0, -1])
def test_softmax(adapters, dim):
    x = torch.randn(4, 6, 5, generator=seeded())
    torch.testing.assert_close(adapters.run_softmax(x, dim), F.softmax(x, dim=dim))
    # The handout subtracts the maximum: huge inputs must not overflow.
    torch.testing.assert_close(adapters.run_softmax(x * 1000, dim), F.softmax(x * 1000, dim=dim))


def _sdpa(adapters, q, k, v, mask):
    """Attention through the course's adapter; the 2024 release takes K, Q, V and True = masked out."""
    import inspect

    function = adapters.run_scaled_dot_product_attention
    if list(inspect.signature(function).parameters)[:2] == ["K", "Q"]:
        return function(k, q, v, None if mask is None else ~mask, 0.0)
    return function(q, k, v, mask)


@pytest.mark.points(5, problem="scaled_dot_product_attention")
@pytest.mark.parametrize("batch_dims", [(2,), (2, 3)])
def test_scaled_dot_product_attention(adapters, batch_dims):
    q = torch.randn(*batch_dims, 5, 8, generator=seeded(0))
    k = torch.randn(*batch_dims, 7, 8, generator=seeded(1))
    v = torch.randn(*batch_dims, 7, 4, generator=seeded(2))
    mask = torch.rand(5, 7, generator=seeded(3)) > 0.4
    mask[:, 0] = True  # every query attends to something
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(_sdpa(adapters, q, k, v, mask), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.points(2, problem="rope")
def test_rope(adapters):
    x = torch.randn(2, 10, 16, generator=seeded())
    positions = torch.randint(0, 50, (10,), generator=seeded(1))
    out = adapters.run_rope(16, 10_000.0, 64, x, positions)
    torch.testing.assert_close(out, rope_reference(x, positions, 10_000.0), atol=1e-5, rtol=1e-5)


def _projections(d_model, seed=0):
    return [torch.randn(d_model, d_model, generator=seeded(seed + i)) / math.sqrt(d_model) for i in range(4)]


def _mha_2024(adapters, d_model, heads, ws, x):
    """The 2024 adapter takes per-head q/k/v matrices (rows of the full projection) in a dict."""
    d_head = d_model // heads
    weights = {"output_proj.weight": ws[3]}
    for name, w in zip("qkv", ws[:3]):
        for h in range(heads):
            weights[f"{name}_heads.{h}.weight"] = w[h * d_head : (h + 1) * d_head]
    return adapters.run_multihead_self_attention(d_model, heads, 0.0, weights, x)


@pytest.mark.points(5, problem="multihead_self_attention")
def test_multihead_self_attention(adapters):
    d_model, heads = 32, 4
    ws = _projections(d_model)
    x = torch.randn(2, 9, d_model, generator=seeded(7))
    import inspect

    if "attn_pdrop" in inspect.signature(adapters.run_multihead_self_attention).parameters:
        out = _mha_2024(adapters, d_model, heads, ws, x)
    else:
        out = adapters.run_multihead_self_attention(d_model, heads, *ws, x)
    torch.testing.assert_close(out, mha_reference(x, *ws, heads), atol=1e-5, rtol=1e-4)


@pytest.mark.points(3, problem="multihead_self_attention")
@pytest.mark.parametrize("positions", [None, [3, 4, 5, 6, 7, 9, 12]], ids=["default", "given"])
def test_multihead_self_attention_with_rope(adapters, positions):
    d_model, heads, seq = 32, 4, 7
    ws = _projections(d_model, seed=10)
    x = torch.randn(2, seq, d_model, generator=seeded(8))
    pos = torch.arange(seq) if positions is None else torch.tensor(positions)
    out = adapters.run_multihead_self_attention_with_rope(d_model, heads, 16, 500.0, *ws, x, pos)
    expected = mha_reference(x, *ws, heads, theta=500.0, positions=pos)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.points(3, problem="transformer_block")
def test_transformer_block(adapters):
    import inspect

    d_model, heads, d_ff = 32, 4, 48
    x = torch.randn(2, 7, d_model, generator=seeded(2))
    if "attn_pdrop" in inspect.signature(adapters.run_transformer_block).parameters:
        w = block_weights(d_model, d_ff, seeded(1), year=2024)
        out = adapters.run_transformer_block(d_model, heads, d_ff, 0.0, 0.0, w, x)
        expected = block_reference(x, w, heads, None, year=2024)
    else:
        w = block_weights(d_model, d_ff, seeded(1))
        out = adapters.run_transformer_block(d_model, heads, d_ff, 16, 10_000.0, w, x)
        expected = block_reference(x, w, heads, 10_000.0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


LM = dict(vocab_size=97, context_length=32, d_model=48, num_layers=2, num_heads=4, d_ff=64)


def _run_lm(adapters, ids, seed=0):
    """(logits from the adapter, expected logits) for course-named random weights."""
    import inspect

    sizes = (LM["vocab_size"], LM["context_length"], LM["d_model"], LM["num_layers"], LM["d_ff"])
    if "attn_pdrop" in inspect.signature(adapters.run_transformer_lm).parameters:
        w = lm_weights(*sizes, seed=seed, year=2024)
        out = adapters.run_transformer_lm(**LM, attn_pdrop=0.0, residual_pdrop=0.0, weights=w, in_indices=ids)
        return out, lm_reference(ids, w, LM["num_layers"], LM["num_heads"], None, year=2024)
    w = lm_weights(*sizes, seed=seed)
    out = adapters.run_transformer_lm(**LM, rope_theta=10_000.0, weights=w, in_indices=ids)
    return out, lm_reference(ids, w, LM["num_layers"], LM["num_heads"], 10_000.0)


@pytest.mark.points(3, problem="transformer_lm")
@pytest.mark.parametrize("seq", [12, 32])
def test_transformer_lm(adapters, seq):
    ids = torch.randint(0, LM["vocab_size"], (2, seq), generator=seeded(3))
    logits, expected = _run_lm(adapters, ids)
    assert logits.shape == (2, seq, LM["vocab_size"])
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.points(1, problem="transformer_lm")
def test_transformer_lm_is_causal(adapters):
    ids = torch.randint(0, LM["vocab_size"], (1, 10), generator=seeded())
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % LM["vocab_size"]
    a, _ = _run_lm(adapters, ids)
    b, _ = _run_lm(adapters, changed)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 6:], b[:, 6:])
