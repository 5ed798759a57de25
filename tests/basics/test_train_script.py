"""End to end: `scripts/train.py` on a local text file turns text into a trained model whose
validation loss is below the unigram entropy, with a loss curve and a sample (the README's job);
generate and export refuse a tokenizer the model cannot embed, and export can skip the tokenizer."""

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

    corpus = tmp_path / "corpus.txt"  # plain text, paragraphs only (no <|endoftext|>): the README's notes.txt
    corpus.write_text("\n\n".join(topics[k].replace("\n\n", "\n") for k in sorted(topics)[:60]))
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


def _tiny_run(adapters, tmp_path) -> Path:
    from tests.basics.test_train import TINY, settings

    config = adapters.make_train_config(
        adapters.get_model_config(**TINY), **settings(tmp_path, max_steps=2, warmup_steps=1)
    )
    adapters.run_train(config)
    return Path(config.out_dir)


def _script(name: str, *args) -> subprocess.CompletedProcess:
    from tests.grading import child_env

    command = [sys.executable, str(REPO / "scripts" / name), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=child_env())


def test_generate_and_export_refuse_a_tokenizer_larger_than_the_model(adapters, tmp_path):
    run = _tiny_run(adapters, tmp_path)  # vocab_size 32: no byte-level tokenizer fits
    tokenizer = adapters.get_tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|endoftext|>"])
    adapters.save_tokenizer(tokenizer, tmp_path / "tok")
    for script, extra in (
        ("generate.py", []),
        ("export_hf.py", ["--out-dir", tmp_path / "hf", "--no-verify"]),
    ):
        done = _script(script, run, "--tokenizer-dir", tmp_path / "tok", *extra)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "vocab_size is 32" in lines[0], done.stderr
    assert not (tmp_path / "hf").exists()


def test_export_without_a_tokenizer(adapters, tmp_path):
    run = _tiny_run(adapters, tmp_path)
    done = _script(
        "export_hf.py", run, "--out-dir", tmp_path / "hf", "--tokenizer-dir", "none", "--no-verify"
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors"]
