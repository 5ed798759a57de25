"""Graders for decoding: greedy with and without the KV cache against a plain loop, top-p, temperature, EOS."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def _model(adapters, seed=0, **overrides):
    kwargs = dict(vocab_size=61, context_length=16, d_model=32, num_layers=2, num_heads=4, rope_theta=1000.0)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = adapters.get_transformer_lm(adapters.get_model_config(**kwargs))
    model.eval()
    return model


@torch.no_grad()
def _greedy_reference(model, prompt, steps, context_length):
    """Plain greedy decoding: run the model on the last context_length tokens, take the argmax."""
    tokens = prompt.clone()
    for _ in range(steps):
        logits = model(tokens[:, -context_length:])[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens[:, prompt.shape[1] :]


@pytest.mark.parametrize(
    "overrides",
    [{}, {"num_kv_heads": 2}, {"norm_impl": "torch", "attention_impl": "sdpa", "rope_impl": "complex"}],
)
def test_greedy_cached_equals_uncached_equals_reference(adapters, overrides):
    model = _model(adapters, **overrides)
    prompt = torch.randint(0, 61, (3, 5), generator=torch.Generator().manual_seed(1))
    # 20 new tokens after a 5-token prompt run past the 16-token context window.
    expected = _greedy_reference(model, prompt, 20, 16)
    cached = adapters.run_generate(model, prompt, 20, temperature=0.0, use_cache=True)
    uncached = adapters.run_generate(model, prompt, 20, temperature=0.0, use_cache=False)
    assert cached.shape == (3, 20) and cached.dtype == torch.int64
    assert torch.equal(uncached, expected)
    assert torch.equal(cached, expected)


def test_tiny_top_p_keeps_only_the_argmax(adapters):
    model = _model(adapters, seed=2)
    prompt = torch.randint(0, 61, (2, 4), generator=torch.Generator().manual_seed(3))
    greedy = adapters.run_generate(model, prompt, 10, temperature=0.0)
    g = torch.Generator().manual_seed(0)
    nucleus = adapters.run_generate(model, prompt, 10, temperature=1.0, top_p=1e-6, generator=g)
    assert torch.equal(nucleus, greedy)


def test_list_prompt_is_one_row(adapters):
    model = _model(adapters, seed=4)
    from_list = adapters.run_generate(model, [3, 1, 4, 1, 5], 6, temperature=0.0)
    from_tensor = adapters.run_generate(model, torch.tensor([[3, 1, 4, 1, 5]]), 6, temperature=0.0)
    assert from_list.shape == (1, 6)
    assert torch.equal(from_list, from_tensor)


def test_seeded_sampling_is_reproducible(adapters):
    model = _model(adapters, seed=5)
    prompt = torch.zeros(4, 3, dtype=torch.long)
    a = adapters.run_generate(model, prompt, 12, generator=torch.Generator().manual_seed(7))
    b = adapters.run_generate(model, prompt, 12, generator=torch.Generator().manual_seed(7))
    c = adapters.run_generate(model, prompt, 12, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1]) or not torch.equal(a[1], a[2])  # rows sample independently


def test_rows_stop_at_eos_and_are_padded(adapters):
    model = _model(adapters, seed=6)
    prompt = torch.randint(0, 61, (3, 4), generator=torch.Generator().manual_seed(6))
    free = adapters.run_generate(model, prompt, 12, temperature=0.0)
    eos = int(free[0, 2])  # row 0 produces this token at step 2
    out = adapters.run_generate(model, prompt, 12, temperature=0.0, eos_token_id=eos)
    for row in range(3):
        hits = (free[row] == eos).nonzero()
        stop = int(hits[0]) if len(hits) else None
        if stop is None:  # this row never produces eos: it runs the full length
            assert out.shape[1] == 12 and torch.equal(out[row], free[row])
        else:  # up to and including the eos as without it, then only eos
            assert torch.equal(out[row, : stop + 1], free[row, : stop + 1])
            assert (out[row, stop + 1 :] == eos).all()
    firsts = [(free[r] == eos).nonzero() for r in range(3)]
    if all(len(f) for f in firsts):  # every row finished: generation stopped at the last one's eos
        assert out.shape[1] == max(int(f[0]) for f in firsts) + 1


def test_generation_does_not_leave_the_model_in_eval_mode(adapters):
    model = _model(adapters, seed=7)
    model.train()
    adapters.run_generate(model, [1, 2, 3], 2, temperature=0.0)
    assert model.training


# ----------------------------------------------------------------------------- the sampling rule


def test_temperature_zero_is_argmax(adapters):
    logits = torch.randn(50, 30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(adapters.run_sample_next_token(logits, 0.0, 1.0), logits.argmax(-1))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_scales_the_distribution(adapters, temperature):
    logits = torch.tensor([0.0, 1.0, 2.0, 3.0])
    n = 40_000
    draws = adapters.run_sample_next_token(
        logits.expand(n, 4), temperature, 1.0, torch.Generator().manual_seed(int(temperature * 10))
    )
    freq = torch.bincount(draws, minlength=4).double() / n
    expected = torch.softmax(logits.double() / temperature, dim=0)
    # Binomial sd <= sqrt(0.25 / 40000) = 0.0025; 0.012 is about 5 sd.
    torch.testing.assert_close(freq, expected, atol=0.012, rtol=0)


@pytest.mark.parametrize(
    "top_p, expected",
    [
        # probabilities 0.5, 0.3, 0.15, 0.05. top_p 0.7: 0.5 < 0.7, so 0.3 is needed too -> {0, 1}
        (0.7, [0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0]),
        # top_p 0.85: 0.5 + 0.3 = 0.8 < 0.85 -> the third token joins
        (0.85, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]),
        (0.4, [1.0, 0.0, 0.0, 0.0]),  # the most likely token alone already covers 0.4
        (1.0, [0.5, 0.3, 0.15, 0.05]),
    ],
)
def test_top_p_nucleus(adapters, top_p, expected):
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()[[2, 0, 3, 1]]  # shuffled: nucleus is by probability
    expected = torch.tensor(expected, dtype=torch.float64)[[2, 0, 3, 1]]
    n = 40_000
    draws = adapters.run_sample_next_token(logits.expand(n, 4), 1.0, top_p, torch.Generator().manual_seed(1))
    freq = torch.bincount(draws, minlength=4).double() / n
    torch.testing.assert_close(freq, expected, atol=0.012, rtol=0)
    assert (freq[expected == 0] == 0).all()  # tokens outside the nucleus are never drawn


def test_bad_sampling_arguments_raise(adapters):
    logits = torch.zeros(1, 5)
    with pytest.raises(ValueError):
        adapters.run_sample_next_token(logits, -1.0, 1.0)
    with pytest.raises(ValueError):
        adapters.run_sample_next_token(logits, 1.0, 0.0)


# ----------------------------------------------------------------------------- text


class _ByteTokenizer:
    eos = "<|endoftext|>"

    def encode(self, text):
        ids = []
        for i, piece in enumerate(text.split(self.eos)):
            if i:
                ids.append(256)
            ids.extend(piece.encode("utf-8"))
        return ids

    def decode(self, ids):
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


def test_generate_text_decodes_the_continuation(adapters):
    model = _model(adapters, seed=8, vocab_size=257, context_length=32)
    tokenizer = _ByteTokenizer()
    text = adapters.run_generate_text(model, tokenizer, "ab", 8, temperature=0.0)
    ids = adapters.run_generate(model, tokenizer.encode("ab"), 8, temperature=0.0)[0].tolist()
    if 256 in ids:
        ids = ids[: ids.index(256)]
    assert isinstance(text, str)
    assert text == tokenizer.decode(ids)


def test_load_trained_model_from_a_run_directory(adapters, tmp_path):
    import dataclasses

    kwargs = dict(vocab_size=61, context_length=16, d_model=32, num_layers=2, num_heads=4, rope_theta=1000.0)
    config = adapters.get_model_config(**kwargs)
    torch.manual_seed(9)
    model = adapters.get_transformer_lm(config).eval()
    optimizer = adapters.get_adamw_cls()(model.parameters())
    run = tmp_path / "run"
    # The layout of a training run: <run>/checkpoints/checkpoint_<step>.pt holding the TrainConfig dict.
    for step in (10, 20):
        path = adapters.checkpoint_path(run / "checkpoints", step)
        adapters.run_save_checkpoint(
            model, optimizer, step, path, config={"model": dataclasses.asdict(config)}
        )
    loaded, stored, checkpoint = adapters.run_load_trained_model(run)
    assert checkpoint.name == adapters.checkpoint_path(run, 20).name
    assert stored["model"]["d_model"] == 32 and not loaded.training
    tokens = torch.randint(0, 61, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))
    with pytest.raises(FileNotFoundError):
        adapters.run_load_trained_model(tmp_path / "missing")
