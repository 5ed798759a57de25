"""Graders for cross-entropy and gradient clipping, against torch.nn.functional / torch.nn.utils."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


@pytest.mark.parametrize("shape", [(7, 11), (2, 5, 13), (3, 2, 4, 50)])
def test_cross_entropy_matches_torch(adapters, shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=g) * 3
    targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
    ours = adapters.run_cross_entropy(logits, targets)
    ref = F.cross_entropy(logits.reshape(-1, shape[-1]), targets.reshape(-1))
    assert ours.shape == ()
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_cross_entropy_gradient_matches_torch(adapters):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 17, generator=g, requires_grad=True)
    targets = torch.randint(0, 17, (4, 6), generator=g)
    adapters.run_cross_entropy(logits, targets).backward()
    ours = logits.grad.clone()
    logits.grad = None
    F.cross_entropy(logits.reshape(-1, 17), targets.reshape(-1)).backward()
    torch.testing.assert_close(ours, logits.grad, atol=1e-7, rtol=1e-5)


def test_cross_entropy_stable_at_large_logits(adapters):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 32, generator=g) * 1000  # exp() of these overflows fp32
    targets = torch.randint(0, 32, (8,), generator=g)
    ours = adapters.run_cross_entropy(logits, targets)
    ref = F.cross_entropy(logits.double(), targets)
    assert torch.isfinite(ours)
    torch.testing.assert_close(ours.double(), ref, atol=1e-3, rtol=1e-6)
    # A constant shift of all logits does not change the loss.
    shifted = adapters.run_cross_entropy(logits + 1e4, targets)
    torch.testing.assert_close(shifted.double(), ref, atol=1e-2, rtol=1e-5)


def test_cross_entropy_uniform_logits_is_log_vocab(adapters):
    logits = torch.zeros(3, 5, 100)
    targets = torch.randint(0, 100, (3, 5))
    loss = adapters.run_cross_entropy(logits, targets)
    assert abs(loss.item() - torch.log(torch.tensor(100.0)).item()) < 1e-6


def test_cross_entropy_low_precision_input_computed_in_fp32(adapters):
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(16, 1000, generator=g) * 4).to(torch.bfloat16)
    targets = torch.randint(0, 1000, (16,), generator=g)
    ours = adapters.run_cross_entropy(logits, targets)
    ref = F.cross_entropy(logits.double(), targets)  # exact loss of the bf16 logits
    assert abs(ours.double().item() - ref.item()) < 1e-4


def test_cross_entropy_shape_mismatch_raises(adapters):
    with pytest.raises(ValueError):
        adapters.run_cross_entropy(torch.zeros(4, 10), torch.zeros(5, dtype=torch.long))


def _params_with_grads(scale: float, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in [(5, 3), (7,), (2, 2, 2), (4,)]]
    for p in params[:3]:  # the last parameter has no gradient and must be ignored
        p.grad = torch.randn(p.shape, generator=g) * scale
    return params


@pytest.mark.parametrize("scale, max_norm", [(10.0, 1.0), (0.01, 1.0), (1.0, 0.5), (3.0, 100.0)])
def test_clip_gradients_matches_torch(adapters, scale, max_norm):
    ours = _params_with_grads(scale)
    ref = _params_with_grads(scale)
    norm = adapters.run_gradient_clipping(ours, max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_([p for p in ref if p.grad is not None], max_norm)
    for a, b in zip(ours, ref):
        if b.grad is None:
            assert a.grad is None
        else:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5)
    if norm is not None:  # returning the norm is our extension; the course's adapter returns nothing
        torch.testing.assert_close(torch.as_tensor(norm, dtype=torch.float32), ref_norm, atol=1e-5, rtol=1e-5)


def test_clip_gradients_exact_rule(adapters):
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])  # norm 5
    adapters.run_gradient_clipping([p], 1.0)
    expected = torch.tensor([3.0, 4.0]) * (1.0 / (5.0 + 1e-6))
    torch.testing.assert_close(p.grad, expected, atol=0, rtol=1e-6)
    new_norm = p.grad.norm().item()
    assert new_norm < 1.0 and new_norm > 1.0 - 1e-5
    # Under the threshold nothing changes, bit for bit.
    q = torch.nn.Parameter(torch.zeros(2))
    q.grad = torch.tensor([0.3, 0.4])
    adapters.run_gradient_clipping([q], 1.0)
    assert torch.equal(q.grad, torch.tensor([0.3, 0.4]))
