"""Graders for the alignment stages' robustness: configs refuse bad values at the door, JSONL files are
type-checked with file:line errors, a non-finite loss stops training before anything NaN is written, and
an interrupted stage resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from tests.alignment.tiny import CharTokenizer

pytestmark = pytest.mark.extension

BAD_CONFIGS = [
    ("sft", {"learning_rate": float("nan")}),
    ("sft", {"max_grad_norm": float("inf")}),
    ("sft", {"gradient_accumulation_steps": 0}),
    ("sft", {"batch_size": 6, "gradient_accumulation_steps": 4}),
    ("dpo", {"beta": float("nan")}),
    ("dpo", {"beta": 0.0}),
    ("dpo", {"steps": -1}),
    ("grpo", {"group_size": 1}),
    ("grpo", {"cliprange": float("nan")}),
    ("grpo", {"cliprange": 1.5}),
    ("grpo", {"top_p": 0.0}),
    ("grpo", {"temperature": -1.0}),
    ("grpo", {"eval_every": -1}),
    ("grpo", {"epochs_per_rollout_batch": 2, "loss_type": "reinforce_with_baseline"}),
    ("expert_iteration", {"samples_per_question": 0}),
    ("expert_iteration", {"learning_rate": float("-inf")}),
    ("reward_model", {"learning_rate": float("inf")}),
    ("reward_model", {"min_learning_rate": 1.0}),
    ("reward_model", {"batch_size": 0}),
    ("ppo", {"kl_coef": -0.1}),
    ("ppo", {"lam": 1.5}),
    ("ppo", {"gamma": float("nan")}),
    ("ppo", {"cliprange_value": 0.0}),
    ("ppo", {"kl_estimator": "k2"}),
    ("ppo", {"minibatch_size": 48}),
    ("ppo", {"rollouts_per_step": 1, "minibatch_size": 1, "microbatch_size": 1}),
    ("task", {"sloppy_fraction": 1.5}),
    ("task", {"eval_size": 0}),
]


@pytest.mark.parametrize("stage, fields", BAD_CONFIGS, ids=[f"{s}-{next(iter(f))}" for s, f in BAD_CONFIGS])
def test_configs_refuse_bad_values(adapters, stage, fields):
    with pytest.raises(ValueError) as error:
        adapters.get_stage_config(stage, **fields)
    assert "\n" not in str(error.value)
    assert any(name in str(error.value) for name in fields)  # the message names the field


@pytest.mark.parametrize("stage", ["sft", "dpo", "grpo", "expert_iteration", "reward_model", "ppo", "task"])
def test_configs_accept_their_defaults(adapters, stage):
    adapters.get_stage_config(stage)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize(
    "line, complaint",
    [
        ('{"prompt": "a", "response": 12}', "'response'"),
        ('{"prompt": "a"}', "'response'"),
        ('["a", "b"]', "object"),
        ('{"prompt": "a", "response": "b"', "JSON"),
        ('{"prompt": null, "response": "b"}', "'prompt'"),
    ],
)
def test_sft_jsonl_errors_name_file_and_line(adapters, tmp_path, line, complaint):
    path = _write(tmp_path / "sft.jsonl", ['{"prompt": "x", "response": "y"}', "", line])
    with pytest.raises(ValueError) as error:
        adapters.run_read_sft_jsonl(path)
    message = str(error.value)
    assert message.startswith(f"{path}:3:") and complaint in message and "\n" not in message


def test_gsm8k_jsonl_errors_name_file_and_line(adapters, tmp_path):
    good = json.dumps({"question": "q", "answer": "1 + 1 = 2\n#### 2"})
    for bad in (
        json.dumps({"question": "q", "answer": 2}),  # a number, not a string
        json.dumps({"question": "q", "answer": "no marker"}),
        json.dumps({"question": "q", "answer": "x ####  "}),
    ):
        path = _write(tmp_path / "gsm.jsonl", [good, bad])
        with pytest.raises(ValueError) as error:
            adapters.run_read_gsm8k_task(path)
        assert str(error.value).startswith(f"{path}:2:"), str(error.value)
    assert adapters.run_read_gsm8k_task(_write(tmp_path / "ok.jsonl", [good]))[0]["answer"] == "2"


class NaNAfter(torch.nn.Module):
    """A bigram model whose logits become NaN from its ``bad_call``-th training forward on."""

    def __init__(self, vocab: int, bad_call: int):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))
        self.calls, self.bad_call = 0, bad_call

    def forward(self, ids):
        if self.training:
            self.calls += 1
        logits = self.table[ids]
        return logits * float("nan") if self.calls >= self.bad_call else logits


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_nonfinite_loss_stops_before_anything_nan_is_written(adapters, tmp_path, stage):
    tok = CharTokenizer()
    # steps 1-3 are fine, step 4 diverges (DPO runs two forwards a step: chosen, then rejected)
    model = NaNAfter(tok.vocab_size, bad_call=4 if stage == "sft" else 7)
    if stage == "sft":
        data, extra = [("1+1=", "2"), ("2+2=", "4")], {"learning_rate": 1e-2, "warmup_steps": 1}
    else:
        data, extra = [("1+1=", "2", "3"), ("2+2=", "4", "5")], {"beta": 0.5, "learning_rate": 1e-2}
        extra["reference"] = copy.deepcopy(model).eval()
    with pytest.raises(adapters.get_training_diverged()) as error:
        adapters.run_stage(
            stage,
            model,
            tok,
            data,
            checkpoint_dir=tmp_path,
            steps=6,
            batch_size=2,
            checkpoint_every=1,
            **extra,
        )
    assert "step 4" in str(error.value) and "checkpoint_00000003.pt" in str(error.value)
    assert torch.isfinite(model.table).all()  # the diverged step was never applied
    saved = sorted(tmp_path.glob("checkpoint_*.pt"))
    assert saved and all("00000004" not in p.name for p in saved)
    for path in saved:
        state = torch.load(path, weights_only=True)["model"]
        assert all(torch.isfinite(t).all() for t in state.values())


def _first_char_reward(response, ground_truth):
    hit = bool(response) and response[0] in ground_truth
    return {"format_reward": 1.0, "answer_reward": float(hit), "reward": float(hit)}


def _odd_first_char_reward(response, ground_truth):
    """About half the samples of an untrained model score 1, so the value model learns from step 1."""
    hit = bool(response) and ord(response[0]) % 2 == 1
    return {"format_reward": 1.0, "answer_reward": float(hit), "reward": float(hit)}


def _stage_inputs(adapters, stage):
    tok = CharTokenizer()
    model = adapters.get_transformer_lm(tok.vocab_size, 32, 32, 1, 2, 64, seed=5)
    if stage == "sft":
        data = [(f"{a}+{b}=", str(a + b)) for a in range(4) for b in range(4)]
        config = {"batch_size": 4, "learning_rate": 1e-2, "warmup_steps": 2}
    elif stage == "dpo":
        data = [(f"{a}+{b}=", str(a + b), str(a + b + 1)) for a in range(3) for b in range(3)]
        config = {
            "batch_size": 4,
            "beta": 0.5,
            "learning_rate": 1e-2,
            "reference": copy.deepcopy(model).eval(),
        }
    elif stage == "reward_model":
        model = adapters.get_reward_model(model)
        data = [(f"{a}+{b}=", str(a + b), str(a + b + 1)) for a in range(3) for b in range(3)]
        config = {"batch_size": 4, "learning_rate": 1e-2, "warmup_steps": 2}
    elif stage == "ppo":
        data = [(q, "abc0123") for q in ("x", "y", "z")]
        config = {"rollouts_per_step": 8, "minibatch_size": 4, "microbatch_size": 2, "max_new_tokens": 2}
        config.update(reward_fn=_odd_first_char_reward, learning_rate=1e-2, kl_coef=0.1)
    else:
        data = [(q, "abc0123") for q in ("x", "y", "z")]
        config = {"prompts_per_step": 2, "group_size": 4, "max_new_tokens": 2, "learning_rate": 1e-2}
        config.update(reward_fn=_first_char_reward, loss_type="grpo_clip", epochs_per_rollout_batch=2)
    return tok, model, data, config


def _count_training_forwards(model, bad_call: int | None = None) -> list[int]:
    """Count ``model``'s forwards that build a graph (training, not sampling or scoring); from the
    ``bad_call``-th on its output becomes NaN. Copies of ``model`` (a value model, a reference) are left
    alone."""
    calls = [0]

    def hook(module, inputs, output):
        if module is not model or not torch.is_grad_enabled():
            return None
        calls[0] += 1
        return output * float("nan") if bad_call is not None and calls[0] >= bad_call else None

    model.register_forward_hook(hook)
    return calls


@pytest.mark.parametrize("stage", ["grpo", "reward_model", "ppo"])
def test_nonfinite_loss_stops_every_stage(adapters, tmp_path, stage):
    tok, model, data, config = _stage_inputs(adapters, stage)
    calls = _count_training_forwards(model)
    adapters.run_stage(stage, model, tok, data, steps=3, **config)
    per_step, rest = divmod(calls[0], 3)
    assert per_step >= 1 and rest == 0, calls
    tok, model, data, config = _stage_inputs(adapters, stage)
    _count_training_forwards(model, bad_call=3 * per_step + 1)  # steps 1-3 fine, step 4's first forward NaN
    with pytest.raises(adapters.get_training_diverged()) as error:
        adapters.run_stage(
            stage, model, tok, data, checkpoint_dir=tmp_path, steps=6, checkpoint_every=1, **config
        )
    assert "step 4" in str(error.value) and "checkpoint_00000003.pt" in str(error.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the diverged step was never applied
    saved = sorted(tmp_path.glob("checkpoint_*.pt"))
    assert saved and all("00000004" not in p.name for p in saved)
    for path in saved:
        tensors = [t for t in _tensors(torch.load(path, weights_only=True)) if t.is_floating_point()]
        assert tensors and all(torch.isfinite(t).all() for t in tensors), path


def _tensors(tree):
    """Every tensor in a nested checkpoint (model, optimizer state, extra modules such as a value model)."""
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for value in tree.values():
            yield from _tensors(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _tensors(value)


@pytest.mark.parametrize("stage", ["sft", "dpo", "grpo", "reward_model", "ppo"])
def test_resume_continues_exactly(adapters, tmp_path, stage):
    tok, straight, data, config = _stage_inputs(adapters, stage)
    full = adapters.run_stage(stage, straight, tok, data, steps=6, checkpoint_every=3, **config)
    tok, interrupted, data, config = _stage_inputs(adapters, stage)
    first = adapters.run_stage(
        stage, interrupted, tok, data, checkpoint_dir=tmp_path, steps=6, checkpoint_every=3, **config
    )
    assert len(first) == 6
    # a fresh process: a new model from the same init, the run cut after step 3 (its checkpoint kept)
    for path in tmp_path.glob("checkpoint_*.pt"):
        if "00000003" not in path.name:
            path.unlink()
    tok, resumed, data, config = _stage_inputs(adapters, stage)
    rest = adapters.run_stage(
        stage, resumed, tok, data, checkpoint_dir=tmp_path, resume=True, steps=6, checkpoint_every=3, **config
    )
    assert [m["step"] for m in rest] == [4, 5, 6]
    keys = ("policy_loss", "value_loss", "score") if stage == "ppo" else ("loss",)  # ppo: the value model too
    for key in keys:
        assert all(math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-9) for a, b in zip(full[3:], rest))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resume_without_a_checkpoint_is_an_error(adapters, tmp_path):
    tok, model, data, config = _stage_inputs(adapters, "sft")
    with pytest.raises(FileNotFoundError):
        adapters.run_stage("sft", model, tok, data, checkpoint_dir=tmp_path, resume=True, steps=2, **config)
