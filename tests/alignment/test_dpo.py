"""Graders for DPO: the batched loss on sequence log-probs (hand-computed) and the per-instance loss
against a direct computation, for a plain callable model and a tiny Hugging Face model (alignment/dpo.py)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.alignment.tiny import (
    EOS,
    reference_token_log_probs,
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


