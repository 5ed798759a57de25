"""Adapters for the alignment graders: the only door from tests/alignment to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/alignment --adapters alignment=student_pkg.adapters`.
"""

from __future__ import annotations

from typing import Any

# ---- SFT (alignment/sft.py) ----


def run_tokenize_prompt_and_output(prompt_strs, output_strs, tokenizer) -> dict:
    from alignment.sft import tokenize_prompt_and_output

    return tokenize_prompt_and_output(prompt_strs, output_strs, tokenizer)


def run_compute_entropy(logits):
    from alignment.sft import compute_entropy

    return compute_entropy(logits)


def run_get_response_log_probs(model, input_ids, labels, return_token_entropy: bool = False) -> dict:
    from alignment.sft import get_response_log_probs

    return get_response_log_probs(model, input_ids, labels, return_token_entropy)


def run_masked_normalize(tensor, mask, dim=None, normalize_constant: float = 1.0):
    from alignment.sft import masked_normalize

    return masked_normalize(tensor, mask, dim, normalize_constant)


def run_sft_microbatch_train_step(
    policy_log_probs, response_mask, gradient_accumulation_steps, normalize_constant=1.0
):
    from alignment.sft import sft_microbatch_train_step

    return sft_microbatch_train_step(
        policy_log_probs, response_mask, gradient_accumulation_steps, normalize_constant
    )


def get_packed_sft_dataset(
    tokenizer, dataset_path, seq_length: int, shuffle: bool, template: str | None = None
):
    """dataset_path: a JSONL path (the course) or a list of {"prompt", "response"} dicts (ours)."""
    from alignment.sft import ALPACA_TEMPLATE, PackedSFTDataset

    return PackedSFTDataset(tokenizer, dataset_path, seq_length, shuffle, template or ALPACA_TEMPLATE)


def run_iterate_batches(dataset, batch_size: int, shuffle: bool):
    from alignment.sft import iterate_batches

    return iterate_batches(dataset, batch_size, shuffle)


def get_alpaca_template() -> str:
    """The instruction template, with {prompt} and {response} fields."""
    from alignment.sft import ALPACA_TEMPLATE

    return ALPACA_TEMPLATE


# ---- GRPO (alignment/grpo.py) ----


def run_compute_group_normalized_rewards(
    reward_fn, rollout_responses, repeated_ground_truths, group_size, advantage_eps, normalize_by_std
):
    from alignment.grpo import compute_group_normalized_rewards

    return compute_group_normalized_rewards(
        reward_fn, rollout_responses, repeated_ground_truths, group_size, advantage_eps, normalize_by_std
    )


def run_compute_naive_policy_gradient_loss(raw_rewards_or_advantages, policy_log_probs):
    from alignment.grpo import compute_naive_policy_gradient_loss

    return compute_naive_policy_gradient_loss(raw_rewards_or_advantages, policy_log_probs)


def run_compute_grpo_clip_loss(advantages, policy_log_probs, old_log_probs, cliprange):
    from alignment.grpo import compute_grpo_clip_loss

    return compute_grpo_clip_loss(advantages, policy_log_probs, old_log_probs, cliprange)


def run_compute_policy_gradient_loss(
    policy_log_probs, loss_type, raw_rewards=None, advantages=None, old_log_probs=None, cliprange=None
):
    from alignment.grpo import compute_policy_gradient_loss

    return compute_policy_gradient_loss(
        policy_log_probs, loss_type, raw_rewards, advantages, old_log_probs, cliprange
    )


def run_masked_mean(tensor, mask, dim=None):
    from alignment.grpo import masked_mean

    return masked_mean(tensor, mask, dim)


def run_grpo_microbatch_train_step(
    policy_log_probs,
    response_mask,
    gradient_accumulation_steps,
    loss_type,
    raw_rewards=None,
    advantages=None,
    old_log_probs=None,
    cliprange=None,
):
    from alignment.grpo import grpo_microbatch_train_step

    return grpo_microbatch_train_step(
        policy_log_probs,
        response_mask,
        gradient_accumulation_steps,
        loss_type,
        raw_rewards,
        advantages,
        old_log_probs,
        cliprange,
    )


# ---- DPO (alignment/dpo.py) ----


def run_per_instance_dpo_loss(lm, lm_ref, tokenizer, beta, prompt, response_chosen, response_rejected):
    """Uses the Alpaca template (get_alpaca_template) and appends EOS to each response."""
    from alignment.dpo import per_instance_dpo_loss

    return per_instance_dpo_loss(lm, lm_ref, tokenizer, beta, prompt, response_chosen, response_rejected)


def run_compute_per_instance_dpo_loss(
    lm, lm_ref, tokenizer, beta, prompt, response_chosen, response_rejected
):
    """The course's name for run_per_instance_dpo_loss."""
    return run_per_instance_dpo_loss(lm, lm_ref, tokenizer, beta, prompt, response_chosen, response_rejected)


def run_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> tuple[Any, dict]:
    """Batched DPO on sequence log-probs -> (mean loss, {"reward_accuracy", "reward_margin", ...})."""
    from alignment.dpo import dpo_loss

    return dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)


# ---- rewards (alignment/rewards.py) ----


def run_r1_zero_reward_fn(response: str, ground_truth) -> dict[str, float]:
    from alignment.rewards import r1_zero_reward_fn

    return r1_zero_reward_fn(response, ground_truth)


def run_parse_gsm8k_response(model_output: str) -> str | None:
    from alignment.rewards import parse_gsm8k_response

    return parse_gsm8k_response(model_output)


def run_parse_mmlu_response(mmlu_example: dict, model_output: str) -> str | None:
    from alignment.rewards import parse_mmlu_response

    return parse_mmlu_response(mmlu_example, model_output)


# ---- sampling and evaluation (alignment/sampling.py, alignment/evaluate.py) ----


def run_sample_completions(
    model, tokenizer, prompts, *, max_new_tokens, temperature=1.0, top_p=1.0, stop=(), seed=0
):
    """One decoded completion per prompt, cut at EOS and after the first stop string (kept)."""
    import torch

    from alignment.interop import model_device
    from alignment.sampling import sample_completions

    generator = torch.Generator(device=model_device(model)).manual_seed(seed)
    return sample_completions(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
        generator=generator,
    )


def run_wilson_interval(successes: int, n: int) -> tuple[float, float]:
    from alignment.evaluate import wilson_interval

    return wilson_interval(successes, n)


def run_load_gsm8k(path) -> list[dict]:
    """-> [{"question", "answer"}] with answer the number after '####' (commas removed)."""
    from alignment.evaluate import load_gsm8k

    return load_gsm8k(path)


def run_load_mmlu(path) -> list[dict]:
    """-> [{"subject", "question", "options": [4 strings], "answer": letter}]."""
    from alignment.evaluate import load_mmlu

    return load_mmlu(path)


def run_evaluate_model(
    model, tokenizer, prompts, ground_truths, reward_fn, max_new_tokens, output_path
) -> dict:
    """Greedy generation + grading; -> {"accuracy", "ci_low", "ci_high", "n", "format_rate", ...};
    writes one JSONL line per example with prompt, response, ground_truth and the reward keys."""
    from alignment.evaluate import evaluate_model

    result = evaluate_model(
        model,
        tokenizer,
        prompts,
        ground_truths,
        reward_fn,
        max_new_tokens=max_new_tokens,
        output_path=output_path,
    )
    return result.to_dict()


def get_mmlu_reward_fn():
    from alignment.evaluate import mmlu_reward_fn

    return mmlu_reward_fn


# ---- our model, the demo task and the training loops ----


def get_transformer_lm(
    vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta=10000.0, seed=0
):
    """Unit 1's TransformerLM, the model every alignment stage trains."""
    import torch

    from basics.model import TransformerLM

    torch.manual_seed(seed)
    return TransformerLM(
        vocab_size=vocab_size,
        context_length=context_length,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        d_ff=d_ff,
        rope_theta=rope_theta,
    )


def get_byte_tokenizer():
    """Unit 1's Tokenizer with the 256 byte tokens, no merges, and <|endoftext|> = 256."""
    from alignment.tasks import byte_tokenizer

    return byte_tokenizer()


def get_addition_problems(count: int, digits: int, seed: int, sloppy_fraction: float = 0.0) -> list[dict]:
    """-> [{"question": "47+85", "answer": "132", "prompt": "...<think>", "solution": " ... </answer>"}];
    a sloppy_fraction of the solutions drop the final carry from the answer line (answer stays correct)."""
    import dataclasses

    from alignment.tasks import make_addition_problems

    problems = make_addition_problems(count, digits, seed, sloppy_fraction=sloppy_fraction)
    return [dataclasses.asdict(p) for p in problems]


def run_train_sft(
    model, tokenizer, examples, steps: int, batch_size: int, learning_rate: float
) -> list[dict]:
    """SFT on (prompt, response) pairs (EOS appended to responses); -> one metrics dict per step with "loss"."""
    from alignment.sft import SFTConfig, train_sft

    config = SFTConfig(
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        min_learning_rate=learning_rate / 10,
        warmup_steps=min(5, steps),
        eval_every=0,
    )
    return train_sft(model, tokenizer, examples, config).history


def run_train_grpo(policy, tokenizer, questions, reward_fn, **config) -> list[dict]:
    """GRPO on (prompt, ground_truth) pairs; config keys are GRPOConfig fields (steps, group_size,
    prompts_per_step, max_new_tokens, learning_rate, loss_type, epochs_per_rollout_batch, ...);
    -> one metrics dict per rollout batch with "reward", "entropy", "clip_fraction", "response_tokens"."""
    from alignment.grpo import GRPOConfig, train_grpo

    return train_grpo(policy, tokenizer, questions, reward_fn, GRPOConfig(eval_every=0, **config)).history


def run_train_dpo(
    policy, reference, tokenizer, pairs, steps: int, beta: float, learning_rate: float
) -> list[dict]:
    """DPO on (prompt, chosen, rejected) triples, prompts used as is; -> metrics per step with
    "loss", "reward_accuracy", "reward_margin"."""
    from alignment.dpo import DPOConfig, train_dpo

    config = DPOConfig(
        steps=steps, batch_size=8, beta=beta, learning_rate=learning_rate, warmup_steps=1, eval_every=0
    )
    return train_dpo(policy, reference, tokenizer, pairs, config).history


def run_preference_accuracy(model, tokenizer, pairs) -> float:
    """Share of (prompt, chosen, rejected) triples with log p(chosen + EOS) > log p(rejected + EOS)."""
    from alignment.dpo import preference_metrics

    return preference_metrics(model, tokenizer, pairs)["preference_accuracy"]


def run_expert_iteration(
    policy, tokenizer, questions, reward_fn, *, checkpoint_dir=None, resume=False, **config
) -> list[dict]:
    """Expert iteration (sample, keep reward-1 responses, SFT), with a checkpoint per round in
    ``checkpoint_dir``; config keys are ExpertIterationConfig fields; -> one metrics dict per round with
    "sample_reward" and "kept_examples"."""
    from alignment.expert_iteration import ExpertIterationConfig, expert_iteration

    hooks = {"checkpoint_dir": checkpoint_dir, "resume": resume}
    return expert_iteration(
        policy, tokenizer, questions, reward_fn, ExpertIterationConfig(**config), **hooks
    ).history


def run_write_addition_choice_task(directory, count: int, seed: int = 0):
    """Write ``count`` addition problems as a multiple-choice JSONL (HellaSwag format) and an
    lm-evaluation-harness task YAML into ``directory`` -> the JSONL's path."""
    from alignment.tasks import make_addition_problems, write_addition_choice_task

    return write_addition_choice_task(directory, make_addition_problems(count, 2, seed), seed)


def run_load_task(
    task: str, eval_size: int, train_size: int, digits: int = 2
) -> tuple[list[dict], list[dict]]:
    """-> (train, heldout) problems as dicts (question, answer, prompt, solution) for the stage scripts;
    ``task`` is "addition" or a GSM8K-format JSONL path."""
    import dataclasses

    from alignment.tasks import TaskConfig, load_task

    data = load_task(TaskConfig(task=task, eval_size=eval_size, train_size=train_size, digits=digits))
    return [dataclasses.asdict(p) for p in data.train], [dataclasses.asdict(p) for p in data.heldout]


def get_sampled_evaluator(tokenizer, prompts, ground_truths, reward_fn, max_new_tokens, temperature, seed):
    """A callback model -> {"heldout_accuracy", ...} that samples at ``temperature`` with a fixed seed."""
    from alignment.evaluate import make_evaluator

    return make_evaluator(
        tokenizer,
        prompts,
        ground_truths,
        reward_fn,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )


# ---- extension: validated configs, typed JSONL, divergence stop, checkpoints and resume ----


def get_stage_config(stage: str, **fields):
    """The frozen config of ``stage`` (sft, dpo, grpo, expert_iteration, reward_model, ppo, task) built
    from ``fields``; invalid values raise ValueError in the constructor."""
    from alignment.dpo import DPOConfig
    from alignment.expert_iteration import ExpertIterationConfig
    from alignment.grpo import GRPOConfig
    from alignment.ppo import PPOConfig
    from alignment.reward_model import RewardModelConfig
    from alignment.sft import SFTConfig
    from alignment.tasks import TaskConfig

    classes = {
        "sft": SFTConfig,
        "dpo": DPOConfig,
        "grpo": GRPOConfig,
        "expert_iteration": ExpertIterationConfig,
        "reward_model": RewardModelConfig,
        "ppo": PPOConfig,
        "task": TaskConfig,
    }
    return classes[stage](**fields)


def run_read_sft_jsonl(path) -> list[dict]:
    """-> [{"prompt", "response"}]; a bad line raises ValueError starting with 'path:line:'."""
    from alignment.sft import read_prompt_response_jsonl

    return read_prompt_response_jsonl(path)


def run_read_gsm8k_task(path) -> list[dict]:
    """GSM8K-format JSONL as task problems; a bad line raises ValueError starting with 'path:line:'."""
    import dataclasses

    from alignment.tasks import read_gsm8k_problems

    return [dataclasses.asdict(p) for p in read_gsm8k_problems(path)]


def get_training_diverged():
    """The exception every training loop raises on a non-finite loss or gradient."""
    from basics.train import TrainingDiverged

    return TrainingDiverged


def run_stage(
    stage: str,
    model,
    tokenizer,
    data,
    *,
    reward_fn=None,
    reference=None,
    checkpoint_dir=None,
    resume=False,
    **config,
) -> list[dict]:
    """Run one stage's loop with checkpoints in ``checkpoint_dir`` (``resume`` continues from the newest);
    ``data``: (prompt, response) pairs for sft, (prompt, chosen, rejected) triples for dpo (with
    ``reference``) and reward_model (``model``: from ``get_reward_model``), (prompt, ground_truth) pairs
    for grpo and ppo (with ``reward_fn``; ppo builds its value model from ``model`` and, without
    ``reference``, a frozen copy of it); ``config``: the stage config's fields. -> the list of per-step
    metrics of this call."""
    import copy

    from alignment.dpo import DPOConfig, train_dpo
    from alignment.grpo import GRPOConfig, train_grpo
    from alignment.ppo import PPOConfig, train_ppo, verifier_scorer
    from alignment.reward_model import RewardModelConfig, scalar_model_from_policy, train_reward_model
    from alignment.sft import SFTConfig, train_sft

    hooks = {"checkpoint_dir": checkpoint_dir, "resume": resume}
    if stage == "sft":
        return train_sft(model, tokenizer, data, SFTConfig(**config), **hooks).history
    if stage == "dpo":
        return train_dpo(model, reference, tokenizer, data, DPOConfig(**config), **hooks).history
    if stage == "grpo":
        return train_grpo(model, tokenizer, data, reward_fn, GRPOConfig(**config), **hooks).history
    if stage == "reward_model":
        return train_reward_model(model, tokenizer, data, RewardModelConfig(**config), **hooks).history
    if stage == "ppo":
        reference = reference if reference is not None else copy.deepcopy(model).eval()
        value_model, scorer = scalar_model_from_policy(model), verifier_scorer(reward_fn)
        ppo_config = PPOConfig(**config)
        return train_ppo(model, value_model, reference, tokenizer, data, scorer, ppo_config, **hooks).history
    raise ValueError(f"unknown stage {stage!r}")


# ---- extension: reward model (alignment/reward_model.py) ----


def run_bradley_terry_loss(chosen_rewards, rejected_rewards):
    """-> (mean -log sigmoid(r_w - r_l), {"accuracy", "margin"})."""
    from alignment.reward_model import bradley_terry_loss

    return bradley_terry_loss(chosen_rewards, rejected_rewards)


def get_reward_model(policy):
    """A reward model built from ``policy`` (ours or HF): a callable ids (batch, seq) -> (batch, seq)."""
    from alignment.reward_model import scalar_model_from_policy

    return scalar_model_from_policy(policy)


def run_score(reward_model, tokenizer, prompts, responses):
    """r(x, y) per pair: the reward model's scalar at the EOS after prompt + response."""
    from alignment.reward_model import score

    return score(reward_model, tokenizer, prompts, responses)


def run_train_reward_model(reward_model, tokenizer, pairs, **config) -> list[dict]:
    """Bradley-Terry training on (prompt, chosen, rejected); config: RewardModelConfig fields."""
    from alignment.reward_model import RewardModelConfig, train_reward_model

    return train_reward_model(reward_model, tokenizer, pairs, RewardModelConfig(**config)).history


def run_pairwise_accuracy(reward_model, tokenizer, pairs) -> float:
    from alignment.reward_model import pairwise_accuracy

    return pairwise_accuracy(reward_model, tokenizer, pairs)["pairwise_accuracy"]


def run_save_load_reward_model(reward_model, tokenizer, path):
    """Save, then load back -> (reward model, tokenizer)."""
    from alignment.reward_model import load_reward_model, save_reward_model

    save_reward_model(reward_model, path, tokenizer)
    return load_reward_model(path)


def run_load_reward_model(path):
    """-> (reward model, tokenizer) from a file or folder written by save_reward_model."""
    from alignment.reward_model import load_reward_model

    return load_reward_model(path)


def run_read_preference_jsonl(path) -> list[tuple[str, str, str]]:
    from alignment.reward_model import read_preference_jsonl

    return read_preference_jsonl(path)


# ---- extension: PPO (alignment/ppo.py) ----


def run_compute_gae(rewards, values, mask, gamma, lam):
    """-> (advantages, returns), each (batch, seq), zero outside ``mask``."""
    from alignment.ppo import compute_gae

    return compute_gae(rewards, values, mask, gamma, lam)


def run_kl_penalty(log_probs, ref_log_probs, estimator):
    from alignment.ppo import kl_penalty

    return kl_penalty(log_probs, ref_log_probs, estimator)


def run_per_token_rewards(scores, kl, mask, kl_coef):
    from alignment.ppo import per_token_rewards

    return per_token_rewards(scores, kl, mask, kl_coef)


def run_whiten(x, mask):
    from alignment.ppo import whiten

    return whiten(x, mask)


def run_clipped_value_loss(values, old_values, returns, mask, cliprange_value):
    from alignment.ppo import clipped_value_loss

    return clipped_value_loss(values, old_values, returns, mask, cliprange_value)


def run_ppo_policy_loss(log_probs, old_log_probs, advantages, mask, cliprange):
    from alignment.ppo import ppo_policy_loss

    return ppo_policy_loss(log_probs, old_log_probs, advantages, mask, cliprange)


def run_explained_variance(values, returns, mask) -> float:
    from alignment.ppo import explained_variance

    return explained_variance(values, returns, mask)


def run_train_ppo(policy, tokenizer, questions, reward_fn, reference=None, **config) -> list[dict]:
    """PPO on (prompt, ground_truth) pairs against a verifiable ``reward_fn``, with a value model built
    from the policy; ``reference`` defaults to a frozen copy. -> metrics per rollout batch."""
    import copy

    from alignment.ppo import PPOConfig, train_ppo, verifier_scorer
    from alignment.reward_model import scalar_model_from_policy

    reference = reference if reference is not None else copy.deepcopy(policy).eval()
    value_model = scalar_model_from_policy(policy)
    scorer = verifier_scorer(reward_fn)
    return train_ppo(
        policy, value_model, reference, tokenizer, questions, scorer, PPOConfig(**config)
    ).history


# ---- extension: log-likelihood evaluation (alignment/likelihood.py) and the lm-evaluation-harness ----


def run_load_multiple_choice(path, format: str = "auto") -> list[dict]:
    """HellaSwag/ARC/MMLU-format JSONL -> [{"context", "choices", "gold"}] (continuation = " " + choice)."""
    import dataclasses

    from alignment.likelihood import load_multiple_choice

    return [dataclasses.asdict(item) for item in load_multiple_choice(path, format)]


def run_continuation_log_likelihoods(
    model, tokenizer, requests, batch_size: int = 32
) -> list[tuple[float, bool]]:
    """(log p(continuation | context), is_greedy) per (context, continuation) string pair."""
    from alignment.likelihood import continuation_log_likelihoods

    return continuation_log_likelihoods(model, tokenizer, requests, batch_size)


def run_evaluate_multiple_choice(model, tokenizer, items: list[dict]) -> dict:
    """-> {"acc", "acc_norm", "log_likelihoods": [[per choice] per item], ...}."""
    import dataclasses

    from alignment.likelihood import MultipleChoiceItem, evaluate_multiple_choice

    result = evaluate_multiple_choice(model, tokenizer, [MultipleChoiceItem(**item) for item in items])
    return dataclasses.asdict(result)


def run_perplexity(model, tokenizer, text: str, window: int, stride: int) -> dict:
    """-> {"tokens", "nll_per_token", "perplexity", "bits_per_byte", ...}; tokens follow an EOS."""
    import dataclasses

    from alignment.likelihood import perplexity

    return dataclasses.asdict(perplexity(model, tokenizer, text, window, stride))


def run_save_policy(model, tokenizer, path) -> None:
    """Save a policy as the alignment stages do (a file for ours, a folder for HF)."""
    from alignment.policy import save_policy

    save_policy(model, path, tokenizer=tokenizer)


def get_lm_eval_command() -> list[str]:
    """The command that runs the lm-evaluation-harness with our model registered as ``lmfs``."""
    import sys
    from pathlib import Path

    return [sys.executable, str(Path(__file__).resolve().parents[2] / "scripts" / "lm_eval_harness.py")]


def run_bradley_terry_loss_reference(chosen: list[float], rejected: list[float]) -> float:
    """The library's plain-loop Bradley-Terry loss (the reference beside the tensor version)."""
    from alignment.reward_model import bradley_terry_loss_reference

    return bradley_terry_loss_reference(chosen, rejected)


def run_compute_gae_reference(rewards: list[list[float]], values: list[list[float]], gamma, lam):
    """The library's plain-loop GAE over each episode's response-token rewards and values."""
    from alignment.ppo import compute_gae_reference

    return compute_gae_reference(rewards, values, gamma, lam)


def get_lm_eval_model(path):
    """The lm-evaluation-harness model ``lmfs`` loaded from ``path`` (run directory, policy file or HF
    folder): an object with loglikelihood, loglikelihood_rolling and generate_until."""
    from alignment.lm_eval_model import LMFromScratch

    return LMFromScratch(path=str(path), device="cpu", batch_size=4)


def run_save_training_run(model, tokenizer, run_dir) -> None:
    """Write what ``scripts/train.py`` leaves in a run directory: ``checkpoints/checkpoint_<step>.pt``
    (with the training config, whose ``model`` entry rebuilds the model) and ``tokenizer/``."""
    from pathlib import Path

    from basics.checkpoint import checkpoint_path, save_checkpoint

    run_dir = Path(run_dir)
    config = {"model": model.config.to_dict(), "train_data": "", "out_dir": str(run_dir)}
    save_checkpoint(model, None, 10, checkpoint_path(run_dir / "checkpoints", 10), config=config)
    tokenizer.save(run_dir / "tokenizer")
