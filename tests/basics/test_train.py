"""Graders for the training job: the loop learns, checkpoints, resumes bit for
bit (also after a SIGKILL at a random step), stops clearly on a NaN loss, and validates its config."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.grading import child_env

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

TINY = dict(vocab_size=32, context_length=16, d_model=32, num_layers=2, num_heads=2, d_ff=64)


def write_tokens(tmp_path: Path, n: int = 20_000, seed: int = 0) -> tuple[str, str]:
    """A learnable stream: a repeating random 'sentence' of 24 tokens with 5% of tokens replaced by noise."""
    rng = np.random.default_rng(seed)
    sentence = rng.integers(0, TINY["vocab_size"], 24)
    data = np.tile(sentence, n // 24 + 1)[:n]
    noise = rng.random(n) < 0.05
    data[noise] = rng.integers(0, TINY["vocab_size"], noise.sum())
    train, val = tmp_path / "train.npy", tmp_path / "val.npy"
    np.save(train, data.astype(np.uint16))
    np.save(val, data[: n // 5].astype(np.uint16))
    return str(train), str(val)


def settings(tmp_path, **overrides) -> dict:
    """TrainConfig fields (minus the model) for a 40-step run on the learnable stream."""
    train_path, val_path = write_tokens(tmp_path)
    base = dict(
        train_data=train_path, val_data=val_path, out_dir=str(tmp_path / "run"), batch_size=8, max_steps=40,
        learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=5, eval_interval=20, eval_batches=4,
        checkpoint_interval=20, log_interval=5, progress=False, device="cpu",
    )  # fmt: skip
    return {**base, **overrides}


def config(adapters, tmp_path, **overrides):
    return adapters.make_train_config(adapters.get_model_config(**TINY), **settings(tmp_path, **overrides))


def unigram_entropy(path: str) -> float:
    counts = np.bincount(np.load(path), minlength=TINY["vocab_size"]).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def test_training_learns_and_writes_its_artifacts(adapters, tmp_path):
    cfg = config(adapters, tmp_path, max_steps=60)
    result = adapters.run_train(cfg)
    assert result.steps == 60
    assert result.val_loss < 0.6 * unigram_entropy(cfg.train_data), (
        "loss should fall well below the unigram entropy"
    )
    records = [json.loads(line) for line in Path(result.metrics_path).read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
    assert [r["step"] for r in records if "val_loss" in r] == [20, 40, 60]
    assert Path(result.checkpoint).is_file()
    model = adapters.load_trained_model(result.checkpoint, cfg.model)
    ids = torch.from_numpy(np.load(cfg.val_data)[:17].astype(np.int64))[None]
    loss = torch.nn.functional.cross_entropy(model(ids[:, :-1])[0], ids[0, 1:])
    assert loss.item() < unigram_entropy(cfg.train_data)


def test_gradient_accumulation_matches_one_big_batch(adapters, tmp_path):
    whole = adapters.run_train(config(adapters, tmp_path, max_steps=5, out_dir=str(tmp_path / "a")))
    accumulated = adapters.run_train(
        config(adapters, tmp_path, max_steps=5, grad_accum_steps=4, out_dir=str(tmp_path / "b"))
    )
    model_a = adapters.load_trained_model(whole.checkpoint, adapters.get_model_config(**TINY))
    model_b = adapters.load_trained_model(accumulated.checkpoint, adapters.get_model_config(**TINY))
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)


def test_resume_continues_bit_for_bit(adapters, tmp_path):
    straight = adapters.run_train(
        config(adapters, tmp_path, max_steps=30, checkpoint_interval=10, out_dir=str(tmp_path / "a"))
    )
    # Stop at step 20 (a run whose schedule still says 30 steps), then resume to the end.
    adapters.run_train(
        config(
            adapters,
            tmp_path,
            max_steps=30,
            checkpoint_interval=10,
            out_dir=str(tmp_path / "b"),
            stop_after=20,
        )
    )
    resumed = adapters.run_train(
        config(
            adapters, tmp_path, max_steps=30, checkpoint_interval=10, out_dir=str(tmp_path / "b"), resume=True
        )
    )
    a = adapters.load_trained_model(straight.checkpoint, adapters.get_model_config(**TINY)).state_dict()
    b = adapters.load_trained_model(resumed.checkpoint, adapters.get_model_config(**TINY)).state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_nan_loss_stops_with_a_clear_error(adapters, tmp_path):
    cfg = config(
        adapters,
        tmp_path,
        max_steps=30,
        learning_rate=1e30,
        min_learning_rate=1e30,
        warmup_steps=0,
        grad_clip=0.0,
        checkpoint_interval=1,
    )
    with pytest.raises(adapters.training_diverged_error(), match=r"step \d+.*checkpoint"):
        adapters.run_train(cfg)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=6, grad_accum_steps=4), "divisible"),
        (dict(warmup_steps=100, max_steps=10), "warmup_steps"),
        (dict(min_learning_rate=1.0, learning_rate=0.1), "learning_rate"),
    ],
)
def test_train_config_validation(adapters, tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        config(adapters, tmp_path, **bad)


def test_missing_data_and_out_of_range_ids_are_reported(adapters, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        adapters.run_train(config(adapters, tmp_path, train_data=str(tmp_path / "nope.npy")))
    big = tmp_path / "big.npy"
    np.save(big, np.full(1000, 500, dtype=np.uint16))
    with pytest.raises(ValueError, match="vocab_size"):
        adapters.run_train(config(adapters, tmp_path, train_data=str(big)))


CHILD = textwrap.dedent(
    """
    import sys
    from tests.grading import import_adapters
    adapters = import_adapters(sys.argv[1])
    from tests.basics.test_train import TINY
    import json
    settings = json.loads(sys.argv[2])
    cfg = adapters.make_train_config(adapters.get_model_config(**TINY), **settings)
    adapters.run_train(cfg)
    """
)


def _run_child(adapters, settings: dict) -> subprocess.Popen:
    env = child_env(OMP_NUM_THREADS="1")  # PYTHONPATH prepended: graded adapters stay importable
    return subprocess.Popen([sys.executable, "-c", CHILD, adapters.__name__, json.dumps(settings)], env=env)


def test_sigkill_at_a_random_step_then_resume_matches_uninterrupted_run(adapters, tmp_path):
    base = settings(tmp_path, eval_interval=10, eval_batches=2, checkpoint_interval=5, log_interval=1)
    straight = {**base, "out_dir": str(tmp_path / "straight")}
    assert _run_child(adapters, straight).wait(timeout=300) == 0

    killed = {**base, "out_dir": str(tmp_path / "killed")}
    kill_after = random.Random().randint(7, 33)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    child = _run_child(adapters, killed)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.02)
    assert child.poll() is None, "the run finished before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _run_child(adapters, {**killed, "resume": True}).wait(timeout=300) == 0

    model_config = adapters.get_model_config(**TINY)
    final = lambda run: tmp_path / run / "checkpoints" / "checkpoint_00000040.pt"
    a = adapters.load_trained_model(final("straight"), model_config).state_dict()
    b = adapters.load_trained_model(final("killed"), model_config).state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after kill at step ~{kill_after} and resume"
