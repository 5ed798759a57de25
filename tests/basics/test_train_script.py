"""End to end: `scripts/train.py` on a local text file turns text into a trained model whose
validation loss is below the unigram entropy, with a loss curve and a sample (the README's job)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_train_script_end_to_end(tmp_path):
    from pydoc_data.topics import topics

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("<|endoftext|>".join(topics[k] for k in sorted(topics)[:60]))
    out_dir = tmp_path / "run"
    command = [
        sys.executable,
        str(REPO / "scripts" / "train.py"),
        "--data",
        str(corpus),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--vocab-size",
        "400",
        "--context-length",
        "64",
        "--d-model",
        "64",
        "--num-layers",
        "2",
        "--num-heads",
        "2",
        "--batch-size",
        "16",
        "--max-steps",
        "80",
        "--warmup-steps",
        "5",
        "--eval-interval",
        "40",
        "--checkpoint-interval",
        "40",
        "--out-dir",
        str(out_dir),
        "--no-progress",
        "--sample-tokens",
        "20",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    baseline = float(re.search(r"unigram entropy of validation tokens: ([\d.]+)", done.stdout).group(1))
    val_loss = float(re.search(r"final validation loss ([\d.]+)", done.stdout).group(1))
    assert val_loss < baseline - 0.5, f"validation loss {val_loss} not well below unigram entropy {baseline}"
    assert (out_dir / "loss_curve.png").stat().st_size > 1000
    assert (out_dir / "checkpoints" / "checkpoint_00000080.pt").is_file()
    assert "sample:" in done.stdout
    assert (out_dir / "tokenizer" / "vocab.json").is_file()


def test_train_script_rejects_bad_flags_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--d-model", "50", "--num-heads", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: d_model (50) must be divisible by num_heads (4)"]
