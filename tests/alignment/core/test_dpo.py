"""Graders for DPO: the batched loss on sequence log-probs (hand-computed) and the per-instance loss
against a direct computation, for a plain callable model and a tiny Hugging Face model (alignment/dpo.py)."""


from __future__ import annotations

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

pytestmark = pytest.mark.core
# The handout's prompt template for DPO (the Alpaca format).
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{prompt}\n\n### Response:\n{response}"
)


def _direct_sequence_log_prob(model, tok, template, prompt, response, include_prompt):
    """log p of the response (+EOS) given the templated prompt, from one forward pass of the full text."""
    head = tok.encode(template.format(prompt=prompt, response=""))
    ids = torch.tensor(tok.encode(template.format(prompt=prompt, response=response) + EOS))
    out = model(ids[None, :-1])
    logits = out.logits if hasattr(out, "logits") else out
    token_lp = reference_token_log_probs(logits[0], ids[1:])
    return token_lp.sum() if include_prompt else token_lp[len(head) - 1 :].sum()


@pytest.mark.points(2, problem="per_instance_dpo_loss")
@pytest.mark.parametrize("kind", ["hf"])  # the course's models and tokenizers are Hugging Face ones
def test_per_instance_dpo_loss_matches_direct_computation(adapters, kind):
    tok = CharTokenizer() if kind == "callable" else hf_char_tokenizer()
    vocab = CharTokenizer().vocab_size
    make = BigramLM if kind == "callable" else tiny_hf_model
    policy, ref = make(vocab, seed=1), make(vocab, seed=2)
    template = ALPACA_TEMPLATE
    prompt, chosen, rejected, beta = "What is 2+3?", "The answer is 5.", "It is 6, I think.", 0.5
    loss = adapters.run_compute_per_instance_dpo_loss(policy, ref, tok, beta, prompt, chosen, rejected)
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
