"""Grader for a lab run that diverges: it stops at the first non-finite loss or gradient (no step is
applied after it, the broken model is not scored), is reported as NaN, charged once and cached, and the
ledger holds NULL rather than NaN. A lab run saves no weights; a diverged point is a result of the sweep
(a learning rate too high), not an error, so it does not raise."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

VOCAB = 32
REQUEST = {"d_model": 16, "num_layers": 1, "num_heads": 2, "batch_size": 4, "learning_rate": 1e-3}


def _lab(tmp_path) -> dict:
    tokens = np.random.default_rng(0).integers(0, VOCAB, 6000).astype(np.uint16)
    train, val = tmp_path / "train.npy", tmp_path / "val.npy"
    np.save(train, tokens[:5000])
    np.save(val, tokens[5000:])
    return dict(vocab_size=VOCAB, context_length=16, train_data=str(train), val_data=str(val), val_windows=8)


def _poison_loss(monkeypatch, bad_call: int, gradient_only: bool) -> list[int]:
    """Count unit 1's cross_entropy calls; from the ``bad_call``-th on, the loss is NaN or (with
    ``gradient_only``) finite with a NaN gradient."""
    import basics.nn_utils

    real, calls = basics.nn_utils.cross_entropy, [0]

    def poisoned(logits, targets):
        calls[0] += 1
        loss = real(logits, targets)
        if calls[0] < bad_call:
            return loss
        if gradient_only:
            return loss + (logits.sum() * 0).sqrt()  # value + 0; d sqrt(u)/du at 0 is inf, times 0: NaN
        return loss * math.nan

    monkeypatch.setattr(basics.nn_utils, "cross_entropy", poisoned)
    return calls


@pytest.mark.parametrize("gradient_only", [False, True], ids=["loss", "gradient"])
def test_diverged_lab_run_stops_at_once_and_stores_no_nan(adapters, tmp_path, monkeypatch, gradient_only):
    lab, db = _lab(tmp_path), tmp_path / "ledger.sqlite"
    request = dict(REQUEST, train_flops=3e8)
    clean = adapters.run_lab_query(tmp_path / "clean.sqlite", 1e12, request, None, **lab)
    assert math.isfinite(clean["val_loss"]) and math.isfinite(clean["train_loss"])
    calls = _poison_loss(monkeypatch, 4, gradient_only)  # steps 1-3 fine, step 4 diverges
    result = adapters.run_lab_query(db, 1e12, request, None, **lab)
    assert math.isnan(result["val_loss"]) and math.isnan(result["train_loss"]), result
    assert calls[0] == 4, calls  # no step after the bad one, no validation of the broken model
    assert result["charged"] > 0 and adapters.run_lab_spent(db) == pytest.approx(result["charged"])
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT train_loss, val_loss FROM results").fetchall()
    assert rows == [(None, None)], rows  # SQLite has no NaN: the diverged run is stored as NULL
    again = adapters.run_lab_query(db, 1e12, request, None, **lab)
    assert again["cached"] and again["charged"] == 0 and math.isnan(again["val_loss"])
    assert calls[0] == 4, calls  # the cached diverged result is not trained again
