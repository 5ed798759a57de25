"""Graders for the SFT pieces: tokenisation with response masks, entropy, response log-probs, masked
normalisation, the SFT microbatch step, and packed instruction data (alignment/sft.py via adapters)."""

from __future__ import annotations

import pytest
import torch

from tests.alignment.tiny import (
    BigramLM,
    CharTokenizer,
    hf_char_tokenizer,
    reference_token_log_probs,
    tiny_hf_model,
)

pytestmark = pytest.mark.core


@pytest.fixture(scope="module")
def char_tok():
    return CharTokenizer()


@pytest.fixture(scope="module")
def hf_tok():
    return hf_char_tokenizer()


def _stream(tok, examples, template):
    ids = []
    for ex in examples:
        ids += [
            tok.eos_id,
            *tok.encode(template.format(prompt=ex["prompt"], response=ex["response"])),
            tok.eos_id,
        ]
    return ids


@pytest.mark.points(2, problem="tokenize_prompt_and_output")
def test_tokenize_prompt_and_output_hand_computed(adapters, char_tok):
    a, b, c, d, e = range(5)
    pad = char_tok.eos_id  # no pad token: right-padded with EOS
    out = adapters.run_tokenize_prompt_and_output(["ab", "c"], ["c", "dee"], char_tok)
    # full sequences: [a b c pad] and [c d e e]
    assert out["input_ids"].tolist() == [[a, b, c], [c, d, e]]
    assert out["labels"].tolist() == [[b, c, pad], [d, e, e]]
    assert out["response_mask"].tolist() == [[False, True, False], [True, True, True]]
    assert out["input_ids"].dtype == torch.long and out["response_mask"].dtype == torch.bool


@pytest.mark.points(1, problem="tokenize_prompt_and_output")
def test_tokenize_prompt_and_output_hf_tokenizer_matches_ours(adapters, char_tok, hf_tok):
    prompts, outputs = ["what is 2+2?\n", "hi"], [" 4 </answer>", " there, friend."]
    ours = adapters.run_tokenize_prompt_and_output(prompts, outputs, char_tok)
    theirs = adapters.run_tokenize_prompt_and_output(prompts, outputs, hf_tok)
    for key in ("input_ids", "labels", "response_mask"):
        assert torch.equal(ours[key], theirs[key]), key
    # an HF tokenizer with a pad token pads with it, and adds no special tokens (no BOS)
    hf_tok_pad = hf_char_tokenizer()
    hf_tok_pad.pad_token = "#"
    padded = adapters.run_tokenize_prompt_and_output(["a"], ["b"], hf_tok_pad)
    assert padded["input_ids"].tolist() == [[0]] and padded["labels"].tolist() == [[1]]
    two = adapters.run_tokenize_prompt_and_output(["a", "a"], ["b", "bbb"], hf_tok_pad)
    hash_id = hf_tok_pad.convert_tokens_to_ids("#")
    assert two["labels"][0].tolist() == [1, hash_id, hash_id]
    assert two["response_mask"][0].tolist() == [True, False, False]


@pytest.mark.points(1, problem="compute_entropy")
def test_compute_entropy_matches_torch_distributions(adapters):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11) * 3
    expected = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(adapters.run_compute_entropy(logits), expected, atol=1e-5, rtol=1e-5)
    # uniform over 11 -> log 11; a one-hot-like distribution -> ~0; huge logits stay finite
    torch.testing.assert_close(
        adapters.run_compute_entropy(torch.zeros(2, 11)),
        torch.full((2,), float(torch.log(torch.tensor(11.0)))),
    )
    spiky = torch.tensor([[1e4, 0.0, -1e4]])
    out = adapters.run_compute_entropy(spiky)
    assert torch.isfinite(out).all() and out.abs().max() < 1e-6
    # bf16 in -> bf16 out, close to the fp32 value
    out16 = adapters.run_compute_entropy(logits.bfloat16())
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), expected, atol=0.05, rtol=0.02)


@pytest.mark.points(2, problem="get_response_log_probs")
@pytest.mark.parametrize("kind", ["callable", "hf"])
def test_get_response_log_probs_both_model_kinds(adapters, char_tok, kind):
    vocab = char_tok.vocab_size
    model = BigramLM(vocab) if kind == "callable" else tiny_hf_model(vocab)
    data = adapters.run_tokenize_prompt_and_output(["ab c", "x"], [" 12", "yz=7"], char_tok)
    out = adapters.run_get_response_log_probs(
        model, data["input_ids"], data["labels"], return_token_entropy=True
    )
    with torch.no_grad():
        logits = model(data["input_ids"])
        logits = logits.logits if hasattr(logits, "logits") else logits
    torch.testing.assert_close(
        out["log_probs"], reference_token_log_probs(logits, data["labels"]), atol=1e-5, rtol=1e-5
    )
    expected_entropy = torch.distributions.Categorical(logits=logits.float()).entropy()
    torch.testing.assert_close(out["token_entropy"], expected_entropy, atol=1e-5, rtol=1e-5)
    assert out["log_probs"].shape == data["labels"].shape
    plain = adapters.run_get_response_log_probs(model, data["input_ids"], data["labels"], False)
    assert "token_entropy" not in plain or plain["token_entropy"] is None
    # gradients flow to the model
    plain["log_probs"].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.points(1, problem="masked_normalize")
def test_masked_normalize_hand_computed(adapters):
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, True], [False, True, True]])
    torch.testing.assert_close(adapters.run_masked_normalize(x, mask, None, 2.0), torch.tensor(7.5))
    torch.testing.assert_close(adapters.run_masked_normalize(x, mask, -1, 2.0), torch.tensor([2.0, 5.5]))
    torch.testing.assert_close(adapters.run_masked_normalize(x, mask, 0, 2.0), torch.tensor([0.5, 2.5, 4.5]))
    # masked-out entries never leak in, even when they are inf/nan
    bad = torch.tensor([[1.0, float("nan")], [float("-inf"), 2.0]])
    m = torch.tensor([[True, False], [False, True]])
    torch.testing.assert_close(adapters.run_masked_normalize(bad, m, -1, 1.0), torch.tensor([1.0, 2.0]))
    # an empty mask sums to zero
    torch.testing.assert_close(
        adapters.run_masked_normalize(x, torch.zeros_like(mask), -1, 1.0), torch.zeros(2)
    )


@pytest.mark.points(2, problem="sft_microbatch_train_step")
def test_sft_microbatch_train_step_loss_and_gradient(adapters):
    log_probs = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]], requires_grad=True)
    mask = torch.tensor([[True, False, True], [False, True, True]])
    loss, meta = adapters.run_sft_microbatch_train_step(log_probs, mask, 2, 2.0)
    # per example -(masked sum)/2 = [2, 5.5]; mean 3.75; / 2 accumulation steps
    torch.testing.assert_close(loss, torch.tensor(1.875))
    assert isinstance(meta, dict)
    torch.testing.assert_close(log_probs.grad, -mask.float() / 8)  # d/dx = -mask / (const * batch * gas)
