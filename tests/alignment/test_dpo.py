"""Graders for DPO: the batched loss on sequence log-probs (hand-computed) and the per-instance loss
against a direct computation, for a plain callable model and a tiny Hugging Face model (alignment/dpo.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.alignment.tiny import (
    EOS,
    BigramLM,
    CharTokenizer,
    hf_char_tokenizer,
    reference_token_log_probs,
    tiny_hf_model,
)

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def test_dpo_loss_hand_computed(adapters):
    policy_w = torch.tensor([-3.0, -5.0])
    policy_l = torch.tensor([-6.0, -4.0])
    ref_w = torch.tensor([-4.0, -5.0])
    ref_l = torch.tensor([-5.0, -5.0])
    # log-ratio differences: (1 - (-1)) = 2 and (0 - 1) = -1; beta 0.1 -> margins 0.2 and -0.1
    loss, metrics = adapters.run_dpo_loss(policy_w, policy_l, ref_w, ref_l, 0.1)
    expected = (-math.log(1 / (1 + math.exp(-0.2))) - math.log(1 / (1 + math.exp(0.1)))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert float(metrics["reward_accuracy"]) == pytest.approx(0.5)
    assert float(metrics["reward_margin"]) == pytest.approx(0.05, rel=1e-5)


def _direct_sequence_log_prob(model, tok, template, prompt, response, include_prompt):
    """log p of the response (+EOS) given the templated prompt, from one forward pass of the full text."""
    head = tok.encode(template.format(prompt=prompt, response=""))
    ids = torch.tensor(tok.encode(template.format(prompt=prompt, response=response) + EOS))
    out = model(ids[None, :-1])
    logits = out.logits if hasattr(out, "logits") else out
    token_lp = reference_token_log_probs(logits[0], ids[1:])
    return token_lp.sum() if include_prompt else token_lp[len(head) - 1 :].sum()


@pytest.mark.parametrize("kind", ["callable", "hf"])
def test_per_instance_dpo_loss_matches_direct_computation(adapters, kind):
    tok = CharTokenizer() if kind == "callable" else hf_char_tokenizer()
    vocab = CharTokenizer().vocab_size
    make = BigramLM if kind == "callable" else tiny_hf_model
    policy, ref = make(vocab, seed=1), make(vocab, seed=2)
    template = adapters.get_alpaca_template()
    prompt, chosen, rejected, beta = "What is 2+3?", "The answer is 5.", "It is 6, I think.", 0.5
    loss = adapters.run_per_instance_dpo_loss(policy, ref, tok, beta, prompt, chosen, rejected)
    char = CharTokenizer()
    for include_prompt in (False, True):  # the prompt's terms cancel, so both conventions agree
        with torch.no_grad():
            lp = {
                (name, resp): _direct_sequence_log_prob(m, char, template, prompt, resp, include_prompt)
                for name, m in (("policy", policy), ("ref", ref))
                for resp in (chosen, rejected)
            }
        z = (lp["policy", chosen] - lp["ref", chosen]) - (lp["policy", rejected] - lp["ref", rejected])
        torch.testing.assert_close(loss.detach().float(), -F.logsigmoid(beta * z), atol=1e-4, rtol=1e-4)
    loss.backward()
    assert all(p.grad is None for p in ref.parameters())  # the reference is frozen
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
