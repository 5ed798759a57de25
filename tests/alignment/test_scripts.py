"""Graders for the alignment scripts as a user runs them: every script answers --help; bad settings and
bad files give one ``error:`` line and exit 2 before any work; a diverged run exits 1 and saves no
policy; an interrupted run resumes from its checkpoint to the same policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.extension, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["sft", "dpo", "grpo", "reward_model", "ppo", "evaluate", "lm_eval_harness"]
TINY = [
    "--model-d-model", "16", "--model-num-layers", "1", "--model-num-heads", "2", "--model-context-length", "128",
    "--train-size", "20", "--eval-size", "2", "--max-new-tokens", "4", "--batch-size", "2", "--eval-every", "0",
]  # fmt: skip


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script, tmp_path):
    result = run(script, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage" in result.stdout.lower() + result.stderr.lower()


@pytest.mark.parametrize(
    "script, args, names",
    [
        ("sft", ["--learning-rate", "nan"], "learning_rate"),
        ("sft", ["--gradient-accumulation-steps", "0"], "gradient_accumulation_steps"),
        ("dpo", ["--beta", "nan"], "beta"),
        ("grpo", ["--group-size", "1"], "group_size"),
        ("grpo", ["--temperature", "nan"], "temperature"),
        ("reward_model", ["--learning-rate", "inf"], "learning_rate"),
        ("ppo", ["--kl-coef", "-1"], "kl_coef"),
        ("ppo", ["--cliprange", "2"], "cliprange"),
        ("evaluate", ["--policy", "missing.pt"], "missing.pt"),
    ],
)
def test_bad_settings_exit_2_with_one_line(script, args, names, tmp_path):
    result = (
        run(script, *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
        if script != "evaluate"
        else (run(script, *args, cwd=tmp_path))
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error:") and names in lines[0], lines
    assert not (tmp_path / "out").exists()  # refused at the door: nothing written


def test_bad_preference_file_names_file_and_line(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n" + '{"prompt": "a"}\n')
    policy = tmp_path / "policy.pt"
    assert run("sft", *TINY, "--steps", "1", "--out", str(tmp_path / "sft"), cwd=tmp_path).returncode == 0
    (tmp_path / "sft" / "policy.pt").rename(policy)
    result = run(
        "reward_model",
        "--init",
        str(policy),
        "--pairs",
        str(pairs),
        "--out",
        str(tmp_path / "rm"),
        cwd=tmp_path,
    )
    assert result.returncode == 2 and result.stderr.startswith(f"error: {pairs}:2:"), result.stderr


def test_diverged_run_exits_1_and_saves_no_policy(tmp_path):
    out = tmp_path / "sft"
    result = run("sft", *TINY, "--steps", "4", "--learning-rate", "1e30", "--min-learning-rate", "0",
                 "--warmup-steps", "0", "--checkpoint-every", "1", "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "became" in result.stderr and "checkpoint" in result.stderr
    assert not (out / "policy.pt").exists()
    for path in (out / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)["model"]
        assert all(torch.isfinite(t).all() for t in state.values()), path


def test_interrupted_run_resumes_to_the_same_policy(tmp_path):
    args = [*TINY, "--steps", "4", "--checkpoint-every", "2"]
    assert run("sft", *args, "--out", str(tmp_path / "a"), cwd=tmp_path).returncode == 0
    assert run("sft", *args, "--out", str(tmp_path / "b"), cwd=tmp_path).returncode == 0
    (tmp_path / "b" / "checkpoints" / "checkpoint_00000004.pt").unlink()  # as if killed after step 2
    (tmp_path / "b" / "policy.pt").unlink()
    resumed = run("sft", *args, "--resume", "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "policy.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "policy.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    missing = run("sft", *args, "--resume", "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr


def test_hf_policy_trains_with_fp32_master_weights(tmp_path):
    """An HF model stored in bf16 is trained in fp32 (bf16 autocast on CUDA only): a first AdamW step at
    lr 1e-5 moves weights by ~1e-5, far below bf16's resolution near 0.02 (~1e-4), so a pure-bf16
    update would leave almost every weight unchanged."""
    from safetensors.torch import load_file

    from tests.alignment.tiny import CharTokenizer, hf_char_tokenizer, tiny_hf_model

    init = tmp_path / "hf_bf16"
    tiny_hf_model(CharTokenizer().vocab_size).to(torch.bfloat16).save_pretrained(init)
    hf_char_tokenizer().save_pretrained(init)
    args = ["--train-size", "20", "--eval-size", "2", "--max-new-tokens", "4", "--batch-size", "2"]
    args += ["--eval-every", "0", "--steps", "1", "--learning-rate", "1e-5", "--warmup-steps", "0"]
    result = run("sft", "--init", str(init), *args, "--out", str(tmp_path / "sft"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    before = load_file(init / "model.safetensors")
    after = load_file(tmp_path / "sft" / "policy" / "model.safetensors")
    weight = "model.layers.0.mlp.down_proj.weight"
    assert after[weight].dtype == torch.float32  # the master weights are fp32
    changed = (after[weight] != before[weight].float()).float().mean()
    assert changed > 0.9, float(changed)


STAGE_ARGS = {
    "reward_model": ["--train-pairs", "4", "--samples-per-prompt", "2", "--batch-size", "2"],
    "ppo": ["--reward", "verifier", "--rollouts-per-step", "4", "--minibatch-size", "2", "--microbatch-size", "2"],
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_sft_policy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft")
    result = run("sft", *TINY, "--steps", "1", "--out", str(out), cwd=out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out / "policy.pt"


@pytest.mark.parametrize("script", ["reward_model", "ppo"])
def test_rlhf_stage_script_resumes_to_the_same_model(script, tiny_sft_policy, tmp_path):
    args = [*STAGE_ARGS[script], "--init", str(tiny_sft_policy), "--train-size", "20", "--eval-size", "2"]
    args += ["--max-new-tokens", "4", "--eval-every", "0", "--steps", "4", "--checkpoint-every", "2"]
    saved = "reward_model.pt" if script == "reward_model" else "policy.pt"
    for name in ("a", "b"):
        result = run(script, *args, "--out", str(tmp_path / name), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    (tmp_path / "b" / "checkpoints" / "checkpoint_00000004.pt").unlink()  # as if killed after step 2
    (tmp_path / "b" / saved).unlink()
    resumed = run(script, *args, "--resume", "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = torch.load(tmp_path / "a" / saved, weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / saved, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    if script == "ppo":  # it reports every rollout batch: the resumed run started after step 2
        assert "] step 3 " in resumed.stdout and "] step 1 " not in resumed.stdout, resumed.stdout[-2000:]
    missing = run(script, *args, "--resume", "--out", str(tmp_path / "c"), cwd=tmp_path)
    assert missing.returncode == 2 and "no checkpoint" in missing.stderr, missing.stderr[-2000:]
