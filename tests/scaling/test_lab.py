"""Graders for the budgeted lab: validation, the SQLite ledger (budget never
exceeded, cache hits free, no double spending across processes), resumable sweeps, and a tiny
end-to-end sweep with real training."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.grading import child_env

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

BASE = {"d_model": 32, "num_layers": 2, "num_heads": 2, "batch_size": 4, "learning_rate": 1e-3}
BUDGET = 1e12


def request(train_flops=1e10, **changes):
    return dict(BASE, train_flops=train_flops, **changes)


class CountingRunner:
    """A fake training run: a loss that depends on the request, and a count of calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, req: dict):
        self.calls.append(req)
        loss = 3.0 + 100.0 / req["d_model"] + 1e9 / req["train_flops"]
        return loss + 0.1, loss


def numbers_in(message: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*\.?\d*(?:[eE][+-]?\d+)?", message)]


def test_query_charges_once_and_caches(adapters, tmp_path):
    db, runner = tmp_path / "ledger.sqlite", CountingRunner()
    first = adapters.run_lab_query(db, BUDGET, request(), runner)
    assert first["val_loss"] == pytest.approx(3.0 + 100 / 32 + 0.1)
    assert first["train_loss"] == pytest.approx(first["val_loss"] + 0.1)
    assert first["cached"] is False and first["charged"] == pytest.approx(1e10)
    assert adapters.run_lab_spent(db) == pytest.approx(1e10)
    again = adapters.run_lab_query(db, BUDGET, request(), runner)
    assert again["cached"] is True and again["charged"] == 0
    assert again["val_loss"] == first["val_loss"] and again["train_loss"] == first["train_loss"]
    assert len(runner.calls) == 1
    assert adapters.run_lab_spent(db) == pytest.approx(1e10)
    # A different learning rate is a different config: charged.
    adapters.run_lab_query(db, BUDGET, request(learning_rate=2e-3), runner)
    assert adapters.run_lab_spent(db) == pytest.approx(2e10)
    assert adapters.run_lab_remaining(db) == pytest.approx(BUDGET - 2e10)


def test_seed_is_part_of_the_request(adapters, tmp_path):
    """Another seed of the same config is another run: charged and trained, not a cache hit."""
    db, runner = tmp_path / "ledger.sqlite", CountingRunner()
    adapters.run_lab_query(db, BUDGET, request(seed=0), runner)
    second = adapters.run_lab_query(db, BUDGET, request(seed=1), runner)
    assert second["cached"] is False and len(runner.calls) == 2
    assert adapters.run_lab_spent(db) == pytest.approx(2e10)


def test_over_budget_is_refused_with_remaining_budget(adapters, tmp_path):
    db, runner = tmp_path / "ledger.sqlite", CountingRunner()
    adapters.run_lab_query(db, 5e10, request(3e10), runner)
    with pytest.raises(ValueError, match="(?i)remaining") as error:
        adapters.run_lab_query(db, 5e10, request(3e10, d_model=64, num_heads=4), runner)
    assert any(math.isclose(x, 2e10, rel_tol=1e-2) for x in numbers_in(str(error.value))), str(error.value)
    assert adapters.run_lab_spent(db) == pytest.approx(3e10)
    assert len(runner.calls) == 1
    # What still fits is accepted; exactly filling the budget is allowed.
    adapters.run_lab_query(db, 5e10, request(2e10, d_model=64, num_heads=4), runner)
    assert adapters.run_lab_remaining(db) == pytest.approx(0.0, abs=1.0)


def test_budget_never_exceeded_under_random_requests(adapters, tmp_path):
    db, runner = tmp_path / "ledger.sqlite", CountingRunner()
    rng = np.random.default_rng(0)
    total, accepted = 2e11, 0.0
    for i in range(40):
        flops = float(rng.choice([1e10, 2e10, 3e10, 5e10]))
        req = request(flops, learning_rate=float(rng.choice([1e-3, 2e-3, 3e-3])))
        try:
            result = adapters.run_lab_query(db, total, req, runner)
        except ValueError:
            assert accepted + flops > total, f"request {i} refused though {total - accepted:.3g} remained"
            continue
        accepted += result["charged"]
        assert adapters.run_lab_spent(db) == pytest.approx(accepted)
        assert accepted <= total
    assert accepted > 0.5 * total


@pytest.mark.parametrize(
    "bad",
    [
        {"d_model": 30, "num_heads": 4},  # not divisible
        {"d_model": 0},
        {"num_layers": 0},
        {"batch_size": 0},
        {"learning_rate": -1e-3},
        {"learning_rate": float("nan")},
        {"train_flops": float("nan")},
        {"train_flops": -1e10},
        {"train_flops": 1e3},  # buys less than one step
    ],
)
def test_invalid_requests_are_refused_without_charge(adapters, tmp_path, bad):
    db, runner = tmp_path / "ledger.sqlite", CountingRunner()
    with pytest.raises(ValueError):
        adapters.run_lab_query(db, BUDGET, dict(request(), **bad), runner)
    assert runner.calls == []
    assert adapters.run_lab_spent(db) == 0


_CHILD = """
import os, pathlib, sys, time
from tests.grading import import_adapters
adapters = import_adapters(sys.argv[1])
db, go, d_model, flops = sys.argv[2], pathlib.Path(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.01)
def runner(req):
    time.sleep(0.5)  # hold the run open so the two processes overlap
    return 4.0, 4.0
req = dict(d_model=d_model, num_layers=2, num_heads=2, batch_size=4, learning_rate=1e-3, train_flops=flops)
try:
    result = adapters.run_lab_query(db, {budget}, req, runner)
    print("OK", result["charged"])
except ValueError as error:
    print("REFUSED", error)
"""


def _race(adapters, tmp_path, budget, jobs):
    db, go = tmp_path / "ledger.sqlite", tmp_path / "go"
    code = textwrap.dedent(_CHILD).replace("{budget}", repr(budget))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, adapters.__name__, str(db), str(go), str(d), repr(f)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for d, f in jobs
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.05)  # release both at once, after their start-up
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    return db, [out.strip() for out, _ in outputs]


@pytest.mark.slow
def test_two_processes_do_not_double_spend(adapters, tmp_path):
    # Two different configs of 0.6 x budget each: exactly one fits.
    db, outs = _race(adapters, tmp_path, 1e11, [(32, 6e10), (64, 6e10)])
    assert sorted(o.split()[0] for o in outs) == ["OK", "REFUSED"], outs
    assert adapters.run_lab_spent(db) == pytest.approx(6e10)
    # The same new config from two processes at once: charged once.
    db2_dir = tmp_path / "same"
    db2_dir.mkdir()
    db2, outs = _race(adapters, db2_dir, 1e11, [(32, 4e10), (32, 4e10)])
    assert all(o.startswith("OK") for o in outs), outs
    assert adapters.run_lab_spent(db2) == pytest.approx(4e10)


def test_interrupted_sweep_resumes_without_double_charge(adapters, tmp_path):
    db = tmp_path / "ledger.sqlite"
    budgets = (1e9, 3e9)

    class Interrupting(CountingRunner):
        def __call__(self, req):
            if len(self.calls) == 3:
                raise KeyboardInterrupt  # the student pressed Ctrl-C during the 4th run
            return super().__call__(req)

    first = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        adapters.run_lab_sweep(db, BUDGET, budgets, first, sizes_per_budget=3)
    spent_before = adapters.run_lab_spent(db)
    assert len(first.calls) == 3
    assert spent_before == pytest.approx(sum(r["train_flops"] for r in first.calls) + budgets[1])

    second = CountingRunner()
    records = adapters.run_lab_sweep(db, BUDGET, budgets, second, sizes_per_budget=3)
    assert len(records) == 6
    assert len(second.calls) == 3  # only the interrupted run and the two never started
    assert sum(r["cached"] for r in records) == 3
    expected_spend = 3 * 1e9 + 3 * 3e9
    assert adapters.run_lab_spent(db) == pytest.approx(expected_spend)
    assert sum(r["charged"] for r in records) == pytest.approx(expected_spend - spent_before)
    # A third run of the same sweep is all cache hits and costs nothing.
    third = CountingRunner()
    again = adapters.run_lab_sweep(db, BUDGET, budgets, third, sizes_per_budget=3)
    assert third.calls == [] and all(r["cached"] for r in again)
    assert [r["final_loss"] for r in again] == [r["final_loss"] for r in records]
    assert adapters.run_lab_spent(db) == pytest.approx(expected_spend)


def test_sweep_that_does_not_fit_is_refused_up_front(adapters, tmp_path):
    runner = CountingRunner()
    with pytest.raises(ValueError, match="(?i)remaining"):
        adapters.run_lab_sweep(tmp_path / "l.sqlite", 5e9, (1e9, 3e9), runner, sizes_per_budget=3)
    assert runner.calls == []


def test_ledger_keeps_its_total_budget(adapters, tmp_path):
    db = tmp_path / "ledger.sqlite"
    adapters.run_lab_query(db, BUDGET, request(), CountingRunner())
    with pytest.raises(ValueError):
        adapters.run_lab_query(db, 2 * BUDGET, request(2e10), CountingRunner())


@pytest.mark.slow
def test_tiny_end_to_end_sweep_trains_real_models(adapters, tmp_path):
    """Real training on a tiny token array with structure (a noisy repeating pattern), two budgets,
    three sizes each: losses are finite and below the uniform-guess loss, and a re-run is free."""
    vocab = 64
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, vocab, 97)
    tokens = np.tile(pattern, 400)
    flip = rng.random(tokens.size) < 0.1
    tokens[flip] = rng.integers(0, vocab, flip.sum())
    train, val = tmp_path / "train.npy", tmp_path / "val.npy"
    np.save(train, tokens[:30000].astype(np.uint16))
    np.save(val, tokens[30000:].astype(np.uint16))
    lab = dict(
        vocab_size=vocab,
        context_length=32,
        train_data=str(train),
        val_data=str(val),
        out_dir=str(tmp_path / "runs"),
        val_windows=64,
    )
    db = tmp_path / "ledger.sqlite"
    records = adapters.run_lab_sweep(db, 1e11, (1e9, 3e9), None, sizes_per_budget=3, **lab)
    assert len(records) == 6
    for r in records:
        assert math.isfinite(r["final_loss"]) and r["final_loss"] < math.log(vocab)
    best_per_budget = {
        c: min(r["final_loss"] for r in records if r["compute_budget"] == c) for c in (1e9, 3e9)
    }
    assert best_per_budget[3e9] < best_per_budget[1e9]  # more compute, lower best loss
    spent = adapters.run_lab_spent(db)
    assert spent == pytest.approx(3 * 1e9 + 3 * 3e9)
    again = adapters.run_lab_sweep(db, 1e11, (1e9, 3e9), None, sizes_per_budget=3, **lab)
    assert all(r["cached"] for r in again) and adapters.run_lab_spent(db) == spent


def test_ledger_refuses_results_from_other_lab_settings(adapters, tmp_path):
    """A cached loss depends on the data and vocabulary too: a ledger made with one context length
    must not answer (or charge) requests made with another."""
    db, runner = tmp_path / "ledger.sqlite", CountingRunner()
    adapters.run_lab_query(db, BUDGET, request(), runner, context_length=64)
    with pytest.raises(ValueError):
        adapters.run_lab_query(db, BUDGET, request(), runner, context_length=128)
    assert len(runner.calls) == 1 and adapters.run_lab_spent(db) == pytest.approx(1e10)


def _pattern_tokens(vocab=64, size=6000, seed=0):
    rng = np.random.default_rng(seed)
    tokens = np.tile(rng.integers(0, vocab, 53), size // 53 + 1)[:size]
    flip = rng.random(size) < 0.1
    tokens[flip] = rng.integers(0, vocab, flip.sum())
    return tokens.astype(np.int64)


TINY_LAB = {"vocab_size": 64, "context_length": 16, "val_windows": 16}
TINY_RUN = dict(BASE, d_model=16, batch_size=4, learning_rate=3e-3, train_flops=1e9)


def test_interrupted_run_resumes_to_the_same_result(adapters, tmp_path):
    """A long lab run saves its state as it goes: stopped after 7 of 15 steps and started again, it
    resumes (weights, optimizer moments, data order, schedule) and ends where an unbroken run ends;
    a finished run leaves no checkpoint behind."""
    tokens = _pattern_tokens()
    train, val = tokens[:5000], tokens[5000:]
    whole = adapters.run_lab_train(TINY_LAB, TINY_RUN, 15, train, val)
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        adapters.run_lab_train(TINY_LAB, TINY_RUN, 15, train, val, checkpoint=path, stop_after=7)
    assert path.is_file()
    resumed = adapters.run_lab_train(TINY_LAB, TINY_RUN, 15, train, val, checkpoint=path)
    assert resumed == pytest.approx(whole, rel=1e-6)
    assert not path.exists()
    fresh = adapters.run_lab_train(TINY_LAB, dict(TINY_RUN, seed=1), 15, train, val)
    assert fresh != pytest.approx(whole, rel=1e-6)  # the comparison can tell runs apart


def test_checkpoint_of_another_run_is_not_reused(adapters, tmp_path):
    """A checkpoint belongs to one request and length: another seed, another step count or an
    unreadable file is refused with an error naming the file, never silently resumed."""
    tokens = _pattern_tokens()
    train, val = tokens[:5000], tokens[5000:]
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        adapters.run_lab_train(TINY_LAB, TINY_RUN, 15, train, val, checkpoint=path, stop_after=5)
    for changed, steps in ((dict(TINY_RUN, seed=1), 15), (TINY_RUN, 20)):
        with pytest.raises(ValueError, match="run.pt"):
            adapters.run_lab_train(TINY_LAB, changed, steps, train, val, checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="run.pt"):
        adapters.run_lab_train(TINY_LAB, TINY_RUN, 15, train, val, checkpoint=path)
