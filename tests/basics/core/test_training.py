"""Core graders for the training pieces (assignment 1, section 4-5): cross-entropy, gradient
clipping, AdamW, the cosine schedule, get_batch and checkpointing, through the course's adapters.

AdamW is graded on a well-conditioned quadratic over 100 steps, against torch.optim.AdamW and
against the handout's own update order (decay after the Adam step, eps outside the bias-corrected
root): the two differ by ~2e-5 there, so either is accepted at 1e-4, while a missing bias correction
or decay misses by >1e-2. Nothing here assumes torch's RNG or a particular error type.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.grading import raises_any

pytestmark = pytest.mark.core


# ------------------------------------------------------------------------------------ cross-entropy


@pytest.mark.points(1, problem="cross_entropy")
@pytest.mark.parametrize("shape", [(7, 11), (2, 5, 13)])
def test_cross_entropy(adapters, shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=g) * 3
    targets = torch.randint(0, shape[-1], shape[:-1], generator=g)
    expected = F.cross_entropy(logits.reshape(-1, shape[-1]), targets.reshape(-1))
    torch.testing.assert_close(adapters.run_cross_entropy(logits, targets), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.points(1, problem="cross_entropy")
def test_cross_entropy_is_stable(adapters):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 32, generator=g) * 1000  # exp() of these overflows fp32
    targets = torch.randint(0, 32, (8,), generator=g)
    loss = adapters.run_cross_entropy(logits, targets)
    torch.testing.assert_close(loss.double(), F.cross_entropy(logits.double(), targets), atol=1e-3, rtol=1e-5)


# ------------------------------------------------------------------------------------ clipping


def _params_with_grads(scale: float) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in [(5, 3), (7,), (2, 2, 2), (4,)]]
    for p in params[:3]:  # the last parameter has no gradient
        p.grad = torch.randn(p.shape, generator=g) * scale
    return params


@pytest.mark.points(1, problem="gradient_clipping")
@pytest.mark.parametrize("scale", [10.0, 0.01])
def test_gradient_clipping(adapters, scale):
    ours, ref = _params_with_grads(scale), _params_with_grads(scale)
    adapters.run_gradient_clipping(ours, 1.0)
    torch.nn.utils.clip_grad_norm_([p for p in ref if p.grad is not None], 1.0)  # eps 1e-6, as the handout
    for a, b in zip(ours, ref):
        assert (a.grad is None) == (b.grad is None)
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------------------ AdamW

HYPER = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)


def _quadratic(seed: int = 0):
    """Weights, per-coordinate curvatures in [0.5, 2] and targets of 0.5 * sum(c * (w - t)^2)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 5), (7,), (3, 4)]
    start = [torch.randn(s, generator=g) for s in shapes]
    curvature = [0.5 + 1.5 * torch.rand(s, generator=g) for s in shapes]
    target = [torch.randn(s, generator=g) for s in shapes]
    return start, curvature, target


def _adamw_run(optimizer_cls, steps=100) -> list[torch.Tensor]:
    start, curvature, target = _quadratic()
    params = [torch.nn.Parameter(w.clone()) for w in start]
    optimizer = optimizer_cls(params, **HYPER)
    for _ in range(steps):
        optimizer.zero_grad()
        sum((0.5 * c * (p - t) ** 2).sum() for p, c, t in zip(params, curvature, target)).backward()
        optimizer.step()
    return [p.detach() for p in params]


def _handout_adamw(steps=100) -> list[torch.Tensor]:
    """The handout's algorithm, step by step (Loshchilov & Hutter, 2019, Algorithm 2)."""
    start, curvature, target = _quadratic()
    lr, (b1, b2), eps, decay = HYPER["lr"], HYPER["betas"], HYPER["eps"], HYPER["weight_decay"]
    weights = [w.clone() for w in start]
    m = [torch.zeros_like(w) for w in weights]
    v = [torch.zeros_like(w) for w in weights]
    for t in range(1, steps + 1):
        for i, (w, c, tgt) in enumerate(zip(weights, curvature, target)):
            grad = c * (w - tgt)
            m[i] = b1 * m[i] + (1 - b1) * grad
            v[i] = b2 * v[i] + (1 - b2) * grad**2
            alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            w -= alpha * m[i] / (v[i].sqrt() + eps)
            w -= lr * decay * w
    return weights


@pytest.mark.points(2, problem="adamw")
def test_adamw(adapters):
    ours = _adamw_run(adapters.get_adamw_cls())
    torch_result, handout = _adamw_run(torch.optim.AdamW), _handout_adamw()
    start = _quadratic()[0]
    assert max((a - s).abs().max().item() for a, s in zip(torch_result, start)) > 0.1  # it moves
    for a, b, c in zip(ours, torch_result, handout):
        torch.testing.assert_close(b, c, atol=3e-5, rtol=0)  # the two orders agree on this problem
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------ schedule

# max 1.0, min 0.1, warmup 7, cosine until 21 (the course's setting), evaluated from the formula.
def _cosine(it: int) -> float:
    if it < 7:
        return it / 7
    if it <= 21:
        return 0.1 + 0.5 * (1 + math.cos(math.pi * (it - 7) / 14)) * 0.9
    return 0.1


@pytest.mark.points(1, problem="learning_rate_schedule")
def test_cosine_schedule(adapters):
    got = [adapters.run_get_lr_cosine_schedule(it, 1.0, 0.1, 7, 21) for it in range(25)]
    assert got == pytest.approx([_cosine(it) for it in range(25)], abs=1e-9)


# ------------------------------------------------------------------------------------ get_batch


@pytest.mark.points(1, problem="data_loading")
def test_get_batch_windows(adapters):
    dataset = np.arange(1000, dtype=np.int64)
    x, y = adapters.run_get_batch(dataset, 16, 12, "cpu")
    assert x.shape == y.shape == (16, 12)
    assert x.device.type == "cpu" and not x.is_floating_point()
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)  # consecutive tokens
    assert torch.equal(y, x + 1)  # targets: the inputs moved one token on


@pytest.mark.points(1, problem="data_loading")
def test_get_batch_samples_every_start(adapters):
    """Starts are uniform over 0 .. len - context_length - 1: both ends reachable, nothing beyond."""
    n, context_length = 100, 7
    starts = torch.cat([adapters.run_get_batch(np.arange(n), 2000, context_length, "cpu")[0][:, 0] for _ in range(5)])
    assert starts.min().item() == 0 and starts.max().item() == n - context_length - 1
    counts = torch.bincount(starts, minlength=n - context_length).double()
    expected = len(starts) / (n - context_length)
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 170, chi2  # 92 degrees of freedom: a 6-sigma bound


@pytest.mark.points(1, problem="data_loading")
def test_get_batch_unusable_device_raises(adapters):
    adapters.run_get_batch(np.arange(100), 2, 4, "cpu")
    if torch.cuda.device_count() <= 99:
        with raises_any():
            adapters.run_get_batch(np.arange(100), 2, 4, "cuda:99")


# ------------------------------------------------------------------------------------ checkpoints


def _trained(seed: int, steps: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(4, 5, generator=g)).square().mean().backward()
        optimizer.step()
    return model, optimizer


def _same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert a == b


@pytest.mark.points(1, problem="checkpointing")
@pytest.mark.parametrize("target", ["path", "file_object"])
def test_checkpoint_round_trip(adapters, tmp_path, target):
    model, optimizer = _trained(0, 3)
    out = tmp_path / "ckpt.pt" if target == "path" else io.BytesIO()
    adapters.run_save_checkpoint(model, optimizer, 17, out)
    if target == "file_object":
        out.seek(0)
    fresh, fresh_optimizer = _trained(1, 1)
    assert adapters.run_load_checkpoint(out, fresh, fresh_optimizer) == 17
    _same(model.state_dict(), fresh.state_dict())
    _same(optimizer.state_dict(), fresh_optimizer.state_dict())
