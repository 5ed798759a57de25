"""Graders for checkpoints: round trip, exact resume with RNG state, and clear errors on bad files."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _steps(model, optimizer, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(4, 5, generator=g)
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()


def _trained(adapters, seed=0, steps=3):
    model = _model(seed)
    optimizer = adapters.get_adamw_cls()(model.parameters(), lr=1e-2, weight_decay=0.1)
    _steps(model, optimizer, steps)
    return model, optimizer


def _assert_state_equal(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_state_equal(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_state_equal(x, y)
    else:
        assert a == b


def test_round_trip_restores_model_and_optimizer(adapters, tmp_path):
    model, optimizer = _trained(adapters)
    path = tmp_path / "ckpt.pt"
    adapters.run_save_checkpoint(model, optimizer, 3, path)

    fresh, fresh_opt = _trained(adapters, seed=1, steps=1)  # different weights and optimizer state
    assert adapters.run_load_checkpoint(path, fresh, fresh_opt) == 3
    _assert_state_equal(model.state_dict(), fresh.state_dict())
    _assert_state_equal(optimizer.state_dict(), fresh_opt.state_dict())
    # Training on from the loaded state is the same as training on from the original.
    _steps(model, optimizer, 4, seed=9)
    _steps(fresh, fresh_opt, 4, seed=9)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # the temporary file is gone


def test_round_trip_through_a_file_object(adapters):
    model, optimizer = _trained(adapters)
    buffer = io.BytesIO()
    adapters.run_save_checkpoint(model, optimizer, 17, buffer)
    buffer.seek(0)
    fresh, fresh_opt = _trained(adapters, seed=2, steps=1)
    assert adapters.run_load_checkpoint(buffer, fresh, fresh_opt) == 17
    _assert_state_equal(model.state_dict(), fresh.state_dict())
    _assert_state_equal(optimizer.state_dict(), fresh_opt.state_dict())


def test_torch_optimizer_state_also_round_trips(adapters, tmp_path):
    model = _model(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _steps(model, optimizer, 2)
    adapters.run_save_checkpoint(model, optimizer, 2, tmp_path / "c.pt")
    fresh = _model(1)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    assert adapters.run_load_checkpoint(tmp_path / "c.pt", fresh, fresh_opt) == 2
    _assert_state_equal(optimizer.state_dict(), fresh_opt.state_dict())


def test_config_is_stored(adapters, tmp_path):
    model, optimizer = _trained(adapters)
    config = {"d_model": 8, "betas": (0.9, 0.95), "name": "tiny", "out_dir": Path("runs/x"), "lr": 1e-3}
    adapters.run_save_checkpoint(model, optimizer, 1, tmp_path / "c.pt", config=config)
    stored = adapters.run_read_checkpoint_config(tmp_path / "c.pt")
    assert stored["d_model"] == 8 and stored["name"] == "tiny" and stored["lr"] == 1e-3
    assert tuple(stored["betas"]) == (0.9, 0.95)
    assert stored["out_dir"] == "runs/x"  # paths are stored as strings, which weights_only can load


def test_resume_with_restored_rng_draws_the_same_numbers(adapters, tmp_path):
    model, optimizer = _trained(adapters)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    torch.rand(3), np.random.rand(3), random.random()  # advance the generators somewhere arbitrary
    np.random.randn()  # leaves a cached Gaussian in NumPy's legacy state
    adapters.run_save_checkpoint(model, optimizer, 5, tmp_path / "c.pt")
    expected = (torch.rand(5), np.random.rand(5), np.random.randn(3), [random.random() for _ in range(5)])

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    adapters.run_load_checkpoint(tmp_path / "c.pt", model, optimizer, restore_rng=True)
    got = (torch.rand(5), np.random.rand(5), np.random.randn(3), [random.random() for _ in range(5)])
    assert torch.equal(expected[0], got[0])
    np.testing.assert_array_equal(expected[1], got[1])
    np.testing.assert_array_equal(expected[2], got[2])
    assert expected[3] == got[3]


def test_truncated_file_gives_a_clear_error(adapters, tmp_path):
    model, optimizer = _trained(adapters)
    path = tmp_path / "ckpt.pt"
    adapters.run_save_checkpoint(model, optimizer, 3, path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.pt"):
        adapters.run_load_checkpoint(truncated, _model(0))


@pytest.mark.parametrize("kind", ["text", "random_bytes", "other_torch_file", "empty"])
def test_foreign_file_gives_a_clear_error(adapters, tmp_path, kind):
    path = tmp_path / f"foreign_{kind}.pt"
    if kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "other_torch_file":
        torch.save({"weights": torch.ones(3)}, path)  # a valid torch file, but not a checkpoint
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=f"foreign_{kind}"):
        adapters.run_load_checkpoint(path, _model(0))


class _Exploit:
    """Unpickling this would create a marker file: a checkpoint loader must refuse it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_loading_never_runs_code(adapters, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Exploit(marker), "iteration": 1}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        adapters.run_load_checkpoint(path, _model(0))
    assert not marker.exists()


def test_mismatched_model_raises(adapters, tmp_path):
    model, optimizer = _trained(adapters)
    adapters.run_save_checkpoint(model, optimizer, 3, tmp_path / "c.pt")
    other = torch.nn.Sequential(torch.nn.Linear(5, 9))
    with pytest.raises((ValueError, RuntimeError)):
        adapters.run_load_checkpoint(tmp_path / "c.pt", other)


def test_latest_checkpoint(adapters, tmp_path):
    assert adapters.run_latest_checkpoint(tmp_path) is None
    model, optimizer = _trained(adapters)
    for iteration in (5, 100, 20):
        adapters.run_save_checkpoint(
            model, optimizer, iteration, adapters.checkpoint_path(tmp_path, iteration)
        )
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    latest = adapters.run_latest_checkpoint(tmp_path)
    assert Path(latest) == Path(adapters.checkpoint_path(tmp_path, 100))
    assert adapters.run_load_checkpoint(latest, model, optimizer) == 100
