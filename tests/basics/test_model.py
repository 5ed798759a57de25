"""Graders for the Transformer LM: each module against torch built-ins or a
plain reference written here, the state-dict names, the config's validation and ablation switches,
the fast path, grouped-query attention and the KV cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

SMALL = dict(
    vocab_size=97, context_length=32, d_model=48, num_layers=2, num_heads=4, d_ff=64, rope_theta=10_000.0
)
FAST = dict(norm_impl="torch", attention_impl="sdpa", rope_impl="complex")  # torch's kernels throughout


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------- references


def rope_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE as complex multiplication: pair (x[2k], x[2k+1]) is the complex number x[2k] + i x[2k+1],
    rotated by exp(i * pos * theta^(-2k/d))."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.to(torch.float64)[..., None] * freqs  # (..., seq, d/2)
    z = torch.complex(x[..., 0::2].double(), x[..., 1::2].double()) * torch.polar(
        torch.ones_like(angles), angles
    )
    out = torch.stack((z.real, z.imag), dim=-1).flatten(-2)
    return out.to(x.dtype)


def mha_reference(x, wq, wk, wv, wo, num_heads, theta=None, positions=None):
    """Causal multi-head attention from torch built-ins, one head at a time."""
    seq, d_model = x.shape[-2], x.shape[-1]
    d_head = d_model // num_heads
    outs = []
    for h in range(num_heads):
        rows = slice(h * d_head, (h + 1) * d_head)
        q, k, v = x @ wq[rows].T, x @ wk[rows].T, x @ wv[rows].T
        if theta is not None:
            pos = positions if positions is not None else torch.arange(seq)
            q, k = rope_reference(q, pos, theta), rope_reference(k, pos, theta)
        outs.append(F.scaled_dot_product_attention(q, k, v, is_causal=True))
    return torch.cat(outs, dim=-1) @ wo.T


# ----------------------------------------------------------------------------------- modules


def test_linear_matches_matmul(adapters):
    w = torch.randn(7, 5, generator=_seeded())
    x = torch.randn(2, 3, 5, generator=_seeded(1))
    torch.testing.assert_close(adapters.run_linear(5, 7, w, x), x @ w.T)


def test_linear_init_is_truncated_normal_with_glorot_variance(adapters):
    torch.manual_seed(0)
    w = adapters.new_linear(400, 600).weight.detach()
    std = math.sqrt(2 / (400 + 600))
    assert w.shape == (600, 400)
    assert w.abs().max() <= 3 * std + 1e-6
    # A normal truncated at +-3 sigma has std 0.9866 sigma.
    assert w.std().item() == pytest.approx(0.9866 * std, rel=0.02)
    assert w.mean().abs().item() < 0.02 * std


def test_embedding_lookup_and_init(adapters):
    w = torch.randn(11, 4, generator=_seeded())
    ids = torch.tensor([[0, 3, 10], [10, 10, 1]])
    torch.testing.assert_close(adapters.run_embedding(11, 4, w, ids), w[ids])
    torch.manual_seed(0)
    table = adapters.new_embedding(1000, 64).weight.detach()
    assert table.abs().max() <= 3.0
    assert table.std().item() == pytest.approx(0.9866, rel=0.02)


@pytest.mark.parametrize("shape", [(3, 7), (2, 5, 16), (1, 1, 1, 33)])
def test_rmsnorm_matches_torch(adapters, shape):
    x = torch.randn(*shape, generator=_seeded())
    g = torch.randn(shape[-1], generator=_seeded(1))
    expected = F.rms_norm(x, (shape[-1],), g, eps=1e-5)
    torch.testing.assert_close(adapters.run_rmsnorm(shape[-1], 1e-5, g, x), expected)


def test_rmsnorm_computes_in_fp32_and_returns_input_dtype(adapters):
    x = (torch.randn(4, 64, generator=_seeded()) * 300).to(torch.bfloat16)
    g = torch.ones(64, dtype=torch.bfloat16)
    out = adapters.run_rmsnorm(64, 1e-5, g, x)
    assert out.dtype == torch.bfloat16
    expected = (x.float() / torch.sqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_silu_matches_torch(adapters):
    x = torch.linspace(-20, 20, 101)
    torch.testing.assert_close(adapters.run_silu(x), F.silu(x))


def test_swiglu_matches_formula(adapters):
    d_model, d_ff = 16, 40
    w1, w2, w3 = (
        torch.randn(*s, generator=_seeded(i))
        for i, s in enumerate([(d_ff, d_model), (d_model, d_ff), (d_ff, d_model)])
    )
    x = torch.randn(2, 5, d_model, generator=_seeded(9))
    expected = (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    torch.testing.assert_close(adapters.run_swiglu(d_model, d_ff, w1, w2, w3, x), expected)


def test_default_d_ff_is_8_thirds_rounded_to_64(adapters):
    assert adapters.get_model_config(d_model=512, num_heads=8).ffn_dim == 1408  # 8/3*512 = 1365.3 -> 1408
    assert adapters.get_model_config(d_model=768, num_heads=12).ffn_dim == 2048
    assert adapters.get_model_config(d_model=64, num_heads=4, ffn="gelu").ffn_dim == 256


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_matches_torch_and_is_stable(adapters, dim):
    x = torch.randn(4, 6, 5, generator=_seeded())
    torch.testing.assert_close(adapters.run_softmax(x, dim), F.softmax(x, dim=dim))
    big = adapters.run_softmax(x * 1000, dim)
    assert torch.isfinite(big).all()
    torch.testing.assert_close(big, F.softmax(x * 1000, dim=dim))


def test_scaled_dot_product_attention_mask_true_means_attend(adapters):
    q = torch.randn(2, 3, 5, 8, generator=_seeded(0))
    k = torch.randn(2, 3, 7, 8, generator=_seeded(1))
    v = torch.randn(2, 3, 7, 4, generator=_seeded(2))
    mask = torch.rand(5, 7, generator=_seeded(3)) > 0.4
    mask[:, 0] = True  # every query attends to something
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(adapters.run_scaled_dot_product_attention(q, k, v, mask), expected)
    torch.testing.assert_close(
        adapters.run_scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v)
    )


@pytest.mark.parametrize("impl", ["reference", "complex"])
def test_rope_matches_complex_rotation(adapters, impl):
    x = torch.randn(2, 3, 10, 16, generator=_seeded())
    positions = torch.randint(0, 50, (10,), generator=_seeded(1))
    out = adapters.run_rope(16, 10_000.0, 64, x, positions, impl=impl)
    torch.testing.assert_close(out, rope_reference(x, positions, 10_000.0), atol=1e-5, rtol=1e-5)
    # A rotation keeps each pair's length.
    torch.testing.assert_close(out.pow(2).sum(-1), x.pow(2).sum(-1), atol=1e-4, rtol=1e-4)


def test_rope_dot_product_depends_only_on_relative_position(adapters):
    q = torch.randn(1, 8, generator=_seeded())
    k = torch.randn(1, 8, generator=_seeded(1))

    def score(i, j):
        qi = adapters.run_rope(8, 100.0, 64, q, torch.tensor([i]))
        kj = adapters.run_rope(8, 100.0, 64, k, torch.tensor([j]))
        return (qi * kj).sum().item()

    assert score(5, 2) == pytest.approx(score(13, 10), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)


@pytest.mark.parametrize("theta", [None, 10_000.0])
def test_multihead_self_attention_matches_reference(adapters, theta):
    d_model, heads, seq = 32, 4, 9
    ws = [torch.randn(d_model, d_model, generator=_seeded(i)) / math.sqrt(d_model) for i in range(4)]
    x = torch.randn(2, seq, d_model, generator=_seeded(7))
    out = adapters.run_multihead_self_attention(d_model, heads, *ws, x, max_seq_len=16, theta=theta)
    torch.testing.assert_close(out, mha_reference(x, *ws, heads, theta=theta), atol=1e-5, rtol=1e-4)


def test_multihead_self_attention_uses_token_positions(adapters):
    d_model, heads = 16, 2
    ws = [torch.randn(d_model, d_model, generator=_seeded(i)) / 4 for i in range(4)]
    x = torch.randn(1, 5, d_model, generator=_seeded(7))
    positions = torch.tensor([3, 4, 5, 6, 7])
    out = adapters.run_multihead_self_attention(
        d_model, heads, *ws, x, max_seq_len=16, theta=500.0, token_positions=positions
    )
    torch.testing.assert_close(
        out, mha_reference(x, *ws, heads, theta=500.0, positions=positions), atol=1e-5, rtol=1e-4
    )


def test_grouped_query_attention_shares_kv_heads(adapters):
    d_model, heads, kv_heads = 32, 4, 2
    d_head = d_model // heads
    wq, wo = (torch.randn(d_model, d_model, generator=_seeded(i)) / 6 for i in range(2))
    wk, wv = (torch.randn(kv_heads * d_head, d_model, generator=_seeded(i + 2)) / 6 for i in range(2))
    x = torch.randn(2, 6, d_model, generator=_seeded(5))
    out = adapters.run_multihead_self_attention(
        d_model, heads, wq, wk, wv, wo, x, max_seq_len=8, theta=10_000.0, num_kv_heads=kv_heads
    )
    # Equivalent to full MHA whose k/v rows repeat each kv head for its group of query heads.
    group = heads // kv_heads
    expand = lambda w: (
        w.view(kv_heads, d_head, d_model).repeat_interleave(group, dim=0).reshape(d_model, d_model)
    )
    torch.testing.assert_close(
        out, mha_reference(x, wq, expand(wk), expand(wv), wo, heads, theta=10_000.0), atol=1e-5, rtol=1e-4
    )


# ----------------------------------------------------------------------------------- the LM


def test_state_dict_names_are_the_course_names(adapters):
    model = adapters.get_transformer_lm(adapters.get_model_config(**SMALL))
    expected = {"token_embeddings.weight", "ln_final.weight", "lm_head.weight"}
    for i in range(SMALL["num_layers"]):
        for name in (
            "attn.q_proj",
            "attn.k_proj",
            "attn.v_proj",
            "attn.output_proj",
            "ln1",
            "ffn.w1",
            "ffn.w2",
            "ffn.w3",
            "ln2",
        ):
            expected.add(f"layers.{i}.{name}.weight")
    assert set(model.state_dict()) == expected
    assert model.state_dict()["layers.0.ffn.w1.weight"].shape == (SMALL["d_ff"], SMALL["d_model"])


def test_transformer_lm_matches_a_hand_written_forward(adapters):
    torch.manual_seed(0)
    model = adapters.get_transformer_lm(adapters.get_model_config(**SMALL))
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, SMALL["vocab_size"], (2, 12), generator=_seeded(3))
    logits = adapters.run_transformer_lm(**SMALL, weights=weights, in_indices=ids)

    x = weights["token_embeddings.weight"][ids]
    for i in range(SMALL["num_layers"]):
        w = lambda name, i=i: weights[f"layers.{i}.{name}"]
        h = F.rms_norm(x, (SMALL["d_model"],), w("ln1.weight"), 1e-5)
        x = x + mha_reference(
            h,
            w("attn.q_proj.weight"),
            w("attn.k_proj.weight"),
            w("attn.v_proj.weight"),
            w("attn.output_proj.weight"),
            SMALL["num_heads"],
            theta=SMALL["rope_theta"],
        )
        h = F.rms_norm(x, (SMALL["d_model"],), w("ln2.weight"), 1e-5)
        x = x + (F.silu(h @ w("ffn.w1.weight").T) * (h @ w("ffn.w3.weight").T)) @ w("ffn.w2.weight").T
    expected = (
        F.rms_norm(x, (SMALL["d_model"],), weights["ln_final.weight"], 1e-5) @ weights["lm_head.weight"].T
    )
    assert logits.shape == (2, 12, SMALL["vocab_size"])
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_transformer_block_is_pre_norm_residual(adapters):
    torch.manual_seed(1)
    config = dict(d_model=32, num_heads=4, d_ff=48, max_seq_len=16, theta=10_000.0)
    lm = adapters.get_transformer_lm(
        adapters.get_model_config(
            vocab_size=5, context_length=16, d_model=32, num_layers=1, num_heads=4, d_ff=48
        )
    )
    weights = {
        k.removeprefix("layers.0."): v for k, v in lm.state_dict().items() if k.startswith("layers.0.")
    }
    x = torch.randn(2, 7, 32, generator=_seeded(2))
    out = adapters.run_transformer_block(**config, weights=weights, in_features=x)
    h = F.rms_norm(x, (32,), weights["ln1.weight"], 1e-5)
    z = x + mha_reference(
        h,
        weights["attn.q_proj.weight"],
        weights["attn.k_proj.weight"],
        weights["attn.v_proj.weight"],
        weights["attn.output_proj.weight"],
        4,
        theta=10_000.0,
    )
    h = F.rms_norm(z, (32,), weights["ln2.weight"], 1e-5)
    expected = (
        z
        + (F.silu(h @ weights["ffn.w1.weight"].T) * (h @ weights["ffn.w3.weight"].T))
        @ weights["ffn.w2.weight"].T
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_lm_is_causal(adapters):
    torch.manual_seed(0)
    model = adapters.get_transformer_lm(adapters.get_model_config(**SMALL))
    ids = torch.randint(0, SMALL["vocab_size"], (1, 10), generator=_seeded())
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % SMALL["vocab_size"]
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_sequence_longer_than_context_is_refused(adapters):
    model = adapters.get_transformer_lm(adapters.get_model_config(**SMALL))
    with pytest.raises(ValueError, match="context_length"):
        model(torch.zeros(1, SMALL["context_length"] + 1, dtype=torch.long))


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(d_model=50), "divisible"),
        (dict(num_heads=0), "num_heads"),
        (dict(vocab_size=-1), "vocab_size"),
        (dict(num_kv_heads=3), "num_kv_heads"),
        (dict(norm="batchnorm"), "norm"),
        (dict(ffn="relu"), "ffn"),
        (dict(positions="alibi"), "positions"),
        (dict(dropout=1.5), "dropout"),
        (dict(attention_impl="magic"), "attention_impl"),
        (dict(norm="layernorm", norm_impl="triton"), "norm_impl"),
    ],
)
def test_config_validation(adapters, bad, message):
    with pytest.raises(ValueError, match=message):
        adapters.get_model_config(**{**SMALL, **bad})


ABLATIONS = [
    dict(norm="layernorm"),
    dict(norm="none"),
    dict(norm_position="post"),
    dict(ffn="silu", d_ff=None),
    dict(ffn="gelu", d_ff=None),
    dict(positions="learned"),
    dict(positions="none"),
    dict(tie_embeddings=True),
    dict(num_kv_heads=2),
    dict(num_kv_heads=1),
    dict(dropout=0.1),
]


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
def test_ablation_variants_train_and_count_parameters(adapters, ablation):
    torch.manual_seed(0)
    config = adapters.get_model_config(**{**SMALL, **ablation})
    model = adapters.get_transformer_lm(config)
    assert model.num_parameters() == config.num_parameters()
    assert model.num_parameters(non_embedding=True) == config.num_parameters(non_embedding=True)
    ids = torch.randint(0, SMALL["vocab_size"], (4, 16), generator=_seeded())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_ablation_switches_change_the_architecture(adapters):
    base = adapters.get_transformer_lm(adapters.get_model_config(**SMALL))
    tied = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, tie_embeddings=True))
    assert tied.lm_head.weight is tied.token_embeddings.weight
    assert base.num_parameters() - tied.num_parameters() == SMALL["vocab_size"] * SMALL["d_model"]
    learned = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, positions="learned"))
    assert "position_embeddings.weight" in learned.state_dict()
    layernorm = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, norm="layernorm"))
    assert "layers.0.ln1.bias" in layernorm.state_dict()
    gqa = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, num_kv_heads=1))
    assert gqa.state_dict()["layers.0.attn.k_proj.weight"].shape == (
        SMALL["d_model"] // SMALL["num_heads"],
        SMALL["d_model"],
    )


def test_post_norm_block_normalises_after_the_residual(adapters):
    torch.manual_seed(0)
    model = adapters.get_transformer_lm(
        adapters.get_model_config(**{**SMALL, "num_layers": 1}, norm_position="post")
    )
    with torch.no_grad():
        model.layers[0].ln2.weight.fill_(1.0)
        hidden = {}
        model.layers[0].register_forward_hook(lambda m, i, o: hidden.setdefault("out", o))
        model(torch.randint(0, SMALL["vocab_size"], (2, 8), generator=_seeded()))
    rms = hidden["out"].pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("extra", [dict(), dict(num_kv_heads=2), dict(norm="layernorm")])
def test_fast_path_matches_reference(adapters, extra):
    torch.manual_seed(0)
    reference = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, **extra))
    fast = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, **extra, **FAST))
    fast.load_state_dict(reference.state_dict())
    ids = torch.randint(0, SMALL["vocab_size"], (3, 20), generator=_seeded(1))
    ref_logits, fast_logits = reference(ids), fast(ids)
    torch.testing.assert_close(fast_logits, ref_logits, atol=1e-4, rtol=1e-4)
    ref_logits.sum().backward()
    fast_logits.sum().backward()
    for (name, p), q in zip(reference.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)


@pytest.mark.parametrize("impls", [dict(), FAST])
@pytest.mark.parametrize("extra", [dict(), dict(num_kv_heads=2), dict(positions="learned")])
def test_kv_cache_gives_the_same_logits(adapters, impls, extra):
    torch.manual_seed(0)
    model = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, **extra, **impls))
    ids = torch.randint(0, SMALL["vocab_size"], (2, 15), generator=_seeded(4))
    full = model(ids)
    cached = adapters.run_transformer_lm_with_cache(model, ids, [7, 8, 11])
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)


def test_flops_per_token_by_hand(adapters):
    config = adapters.get_model_config(
        vocab_size=100, context_length=16, d_model=8, num_layers=2, num_heads=2, d_ff=24
    )
    # per layer: q,k,v,o 4*8*8 = 256 weights; swiglu 3*8*24 = 576; head 100*8 = 800
    matmul_weights = 2 * (256 + 576) + 800
    assert config.flops_per_token() == 2 * matmul_weights + 2 * 4 * 16 * 8
    assert config.num_parameters() == 100 * 8 + 2 * (256 + 576 + 2 * 8) + 8 + 800


@pytest.mark.parametrize("norm", ["rmsnorm", "layernorm"])
def test_torch_norm_impl_matches_reference(adapters, norm):
    """norm_impl="torch" (F.rms_norm / F.layer_norm) computes the same norm as the written-out one."""
    torch.manual_seed(0)
    reference = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, norm=norm))
    fused = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, norm=norm, norm_impl="torch"))
    fused.load_state_dict(reference.state_dict())
    ids = torch.randint(0, SMALL["vocab_size"], (2, 12), generator=_seeded(2))
    torch.testing.assert_close(fused(ids), reference(ids), atol=1e-5, rtol=1e-5)


def test_checkpoint_saved_with_the_old_fast_flag_still_loads(adapters, tmp_path):
    """Configs saved before the implementation switches were split carry ``fast=True``."""
    torch.manual_seed(0)
    model = adapters.get_transformer_lm(adapters.get_model_config(**SMALL, **FAST))
    path = tmp_path / "checkpoint_1.pt"
    adapters.run_save_checkpoint(model, None, 1, path, config={"model": {**SMALL, "fast": True}})
    loaded, _, _ = adapters.run_load_trained_model(path)
    ids = torch.randint(0, SMALL["vocab_size"], (2, 12), generator=_seeded(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))
