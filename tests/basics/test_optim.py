"""Graders for AdamW (against torch.optim.AdamW) and the learning-rate schedules (hand-computed values)."""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 6, generator=g), torch.randn(32, 3, generator=g)


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
    x, y = _data()
    for _ in range(steps):
        optimizer.zero_grad()
        ((model(x) - y) ** 2).mean().backward()
        optimizer.step()


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(20, 10), (7,), (3, 4, 5), ()]]


def _set_grads(params: list[torch.nn.Parameter], targets: list[torch.Tensor]) -> None:
    # The gradient of a non-convex loss sum(-cos(3w)/3 + (w - target)^2 / 2), written out so that
    # 1000 steps cost milliseconds; it depends on the weights, so any drift would compound.
    for w, target in zip(params, targets):
        w.grad = torch.sin(3 * w.detach()) + (w.detach() - target)


def _run(params, optimizer, steps):
    g = torch.Generator().manual_seed(7)
    targets = [torch.randn(p.shape, generator=g) for p in params]
    for _ in range(steps):
        _set_grads(params, targets)
        optimizer.step()


def test_adamw_matches_torch_over_1000_steps(adapters):
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours, ref = _params(), _params()
    _run(ours, adapters.get_adamw_cls()(ours, **kwargs), 1000)
    _run(ref, torch.optim.AdamW(ref, **kwargs), 1000)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # It really moved the weights far from where they started.
    assert (ours[0] - _params()[0]).abs().max() > 0.5


def test_adamw_trains_a_network_like_torch(adapters):
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours, ref = _model(), _model()
    _train(ours, adapters.get_adamw_cls()(ours.parameters(), **kwargs), 20)
    _train(ref, torch.optim.AdamW(ref.parameters(), **kwargs), 20)
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_adamw_is_an_optimizer_with_default_hyperparameters(adapters):
    cls = adapters.get_adamw_cls()
    assert issubclass(cls, torch.optim.Optimizer)
    w = torch.nn.Parameter(torch.ones(4))
    opt = cls([w], lr=1e-3)
    ref_w = torch.nn.Parameter(torch.ones(4))
    ref = torch.optim.AdamW([ref_w], lr=1e-3, weight_decay=0.01)  # the course's (and our) default decay
    for _ in range(20):
        for p, o in ((w, opt), (ref_w, ref)):
            o.zero_grad()
            (p * torch.arange(4.0)).square().sum().backward()
            o.step()
    torch.testing.assert_close(w, ref_w, atol=1e-7, rtol=0)


def test_adamw_param_groups_match_torch(adapters):
    ours, ref = _params(3), _params(3)

    def groups(ps):
        return [
            {"params": ps[:2], "weight_decay": 0.2},
            {"params": ps[2:], "weight_decay": 0.0, "lr": 3e-3, "betas": (0.8, 0.99), "eps": 1e-6},
        ]

    _run(ours, adapters.get_adamw_cls()(groups(ours), lr=1e-2, betas=(0.9, 0.999)), 300)
    _run(ref, torch.optim.AdamW(groups(ref), lr=1e-2, betas=(0.9, 0.999)), 300)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_adamw_skips_parameters_without_grad(adapters):
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(3))
    opt = adapters.get_adamw_cls()([a, b], lr=0.1, weight_decay=0.5)
    a.sum().backward()
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3))  # no grad: no update, not even weight decay
    # First step: decay then a move of lr * sign(grad) (Adam's first step is +-lr up to eps).
    torch.testing.assert_close(a.detach(), torch.full((3,), 1 * (1 - 0.1 * 0.5) - 0.1), atol=1e-6, rtol=0)


def test_adamw_state_dict_round_trip_resumes_exactly(adapters):
    cls = adapters.get_adamw_cls()
    straight = _model(5)
    _train(straight, cls(straight.parameters(), lr=1e-2, weight_decay=0.1), 20)

    first = _model(5)
    opt = cls(first.parameters(), lr=1e-2, weight_decay=0.1)
    _train(first, opt, 10)
    saved = opt.state_dict()
    second = _model(0)
    second.load_state_dict(first.state_dict())
    opt2 = cls(second.parameters(), lr=1e-2, weight_decay=0.1)
    opt2.load_state_dict(saved)
    _train(second, opt2, 10)
    for a, b in zip(second.parameters(), straight.parameters()):
        assert torch.equal(a, b)


def test_adamw_rejects_bad_hyperparameters(adapters):
    cls = adapters.get_adamw_cls()
    p = [torch.nn.Parameter(torch.ones(1))]
    for kwargs in (dict(lr=-1.0), dict(betas=(1.0, 0.9)), dict(eps=-1e-8), dict(weight_decay=-0.1)):
        with pytest.raises(ValueError):
            cls(p, **kwargs)


# Schedule golden values, computed by hand: max 1.0, min 0.1, warmup 4, cosine ends at 16.
# it=8: progress 1/3, cos(pi/3) = 1/2 -> 0.1 + 0.75 * 0.9; it=10: cos(pi/2) = 0 -> 0.55;
# it=12: cos(2pi/3) = -1/2 -> 0.1 + 0.25 * 0.9.
COSINE_GOLDEN = [
    (0, 0.0),
    (1, 0.25),
    (2, 0.5),
    (3, 0.75),
    (4, 1.0),
    (8, 0.775),
    (10, 0.55),
    (12, 0.325),
    (16, 0.1),
    (17, 0.1),
    (1000, 0.1),
]


@pytest.mark.parametrize("it, expected", COSINE_GOLDEN)
def test_cosine_schedule_golden_values(adapters, it, expected):
    assert adapters.run_get_lr_cosine_schedule(it, 1.0, 0.1, 4, 16) == pytest.approx(expected, abs=1e-12)


def test_cosine_schedule_course_values(adapters):
    # The course's setting (max 1, min 0.1, Tw 7, Tc 21): the formula evaluated independently here.
    for it in range(25):
        if it < 7:
            expected = it / 7
        elif it <= 21:
            expected = 0.1 + 0.5 * (1 + math.cos(math.pi * (it - 7) / 14)) * 0.9
        else:
            expected = 0.1
        assert adapters.run_get_lr_cosine_schedule(it, 1.0, 0.1, 7, 21) == pytest.approx(expected, abs=1e-12)


# WSD golden values: max 1.0, min 0.1, warmup 4, stable 6, decay 8 (decay from it=10 to it=18).
# it=12: f = 1/4 -> linear 1 - 0.9/4 = 0.775; cosine 0.1 + 0.45 (1 + cos(pi/4)) = 0.868198.
WSD_GOLDEN = [
    (0, 0.0, 0.0),
    (2, 0.5, 0.5),
    (4, 1.0, 1.0),
    (9, 1.0, 1.0),
    (10, 1.0, 1.0),
    (12, 0.775, 0.8681980515),
    (14, 0.55, 0.55),
    (16, 0.325, 0.2318019485),
    (18, 0.1, 0.1),
    (50, 0.1, 0.1),
]


@pytest.mark.parametrize("it, linear, cosine", WSD_GOLDEN)
def test_wsd_schedule_golden_values(adapters, it, linear, cosine):
    assert adapters.run_get_lr_wsd_schedule(it, 1.0, 0.1, 4, 6, 8) == pytest.approx(linear, abs=1e-9)
    assert adapters.run_get_lr_wsd_schedule(it, 1.0, 0.1, 4, 6, 8, "cosine") == pytest.approx(
        cosine, abs=1e-9
    )


def test_schedules_reject_bad_arguments(adapters):
    with pytest.raises(ValueError):
        adapters.run_get_lr_cosine_schedule(0, 1.0, 0.1, 10, 5)  # cosine ends before warmup does
    with pytest.raises(ValueError):
        adapters.run_get_lr_wsd_schedule(0, 1.0, 0.1, -1, 5, 5)
    with pytest.raises(ValueError):
        adapters.run_get_lr_wsd_schedule(0, 1.0, 0.1, 1, 5, 5, "exponential")


def _mixed_params(seed: int = 0, low: torch.dtype = torch.float32) -> list[torch.nn.Parameter]:
    """Parameters of fp32 and of ``low`` in one group: the multi-tensor path must group by dtype."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(20, 10), (7,), (3, 4, 5), (), (9, 2)]
    return [
        torch.nn.Parameter(torch.randn(s, generator=g).to(low if i % 2 else torch.float32))
        for i, s in enumerate(shapes)
    ]


def _run_skipping(params, optimizer, steps: int) -> None:
    """Like _run, but parameter 1 has no gradient every third step, so parameters reach different
    step counts (and bias corrections) inside one group."""
    g = torch.Generator().manual_seed(7)
    targets = [torch.randn(p.shape, generator=g).to(p.dtype) for p in params]
    for step in range(steps):
        _set_grads(params, targets)
        if step % 3 == 1:
            params[1].grad = None
        optimizer.step()


def test_foreach_adamw_equals_the_readable_one_bit_for_bit(adapters):
    """In fp32 the multi-tensor step does the same float operations as the per-parameter loop."""
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    readable, multi = _params(), _params()
    _run_skipping(readable, adapters.make_adamw(readable, foreach=False, **kwargs), 200)
    _run_skipping(multi, adapters.make_adamw(multi, foreach=True, **kwargs), 200)
    for a, b in zip(readable, multi):
        assert torch.equal(a, b)
    assert not torch.equal(readable[0], _params()[0])  # it did train


def test_foreach_adamw_matches_torch_foreach_with_mixed_dtypes(adapters):
    """bf16 and fp32 parameters in one group, some skipping steps. In bf16 a multi-tensor op rounds
    differently from its per-tensor twin (torch's own two AdamW paths differ the same way), so the
    peer here is torch's multi-tensor AdamW, within bf16's rounding."""
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours, ref = _mixed_params(low=torch.bfloat16), _mixed_params(low=torch.bfloat16)
    _run_skipping(ours, adapters.make_adamw(ours, foreach=True, **kwargs), 200)
    _run_skipping(ref, torch.optim.AdamW(ref, foreach=True, **kwargs), 200)
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b)  # bf16: rtol 1.6e-2; fp32: rtol 1.3e-6


def test_foreach_adamw_matches_torch_over_1000_steps(adapters):
    kwargs = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    ours, ref = _params(), _params()
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 3e-3, "weight_decay": 0.0}]  # noqa: E731
    _run(ours, adapters.make_adamw(groups(ours), foreach=True, **kwargs), 1000)
    _run(ref, torch.optim.AdamW(groups(ref), foreach=False, **kwargs), 1000)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_foreach_and_readable_adamw_share_their_state(adapters):
    """A run checkpointed with one implementation resumes exactly with the other."""
    kwargs = dict(lr=1e-2, weight_decay=0.1)
    straight = _model(5)
    _train(straight, adapters.make_adamw(straight.parameters(), foreach=False, **kwargs), 20)
    switched = _model(5)
    first = adapters.make_adamw(switched.parameters(), foreach=True, **kwargs)
    _train(switched, first, 10)
    second = adapters.make_adamw(switched.parameters(), foreach=False, **kwargs)
    second.load_state_dict(first.state_dict())
    _train(switched, second, 10)
    for a, b in zip(switched.parameters(), straight.parameters()):
        assert torch.equal(a, b)
