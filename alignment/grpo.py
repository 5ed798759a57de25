"""Group Relative Policy Optimization (GRPO): advantages, policy-gradient losses, and the training loop.

Follows Shao et al. 2024 (DeepSeekMath, GRPO), DeepSeek-AI 2025 (R1-Zero) and the course's alignment
handout (GRPO section). For each question we sample a *group* of G responses, score them with a verifiable
reward, and use the group as its own baseline:

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)      (std: torch's default, unbiased)

The per-token loss is -A * log pi (REINFORCE, on-policy) or the PPO-style clipped surrogate
-min(rho * A, clip(rho, 1 - eps, 1 + eps) * A) with rho = pi / pi_old (several gradient steps per batch).
Per-token losses are averaged over each sequence's response tokens, then over the batch.

Worked example: rewards [1, 0, 0, 1] in one group of 4 have mean 0.5 and unbiased std 0.5774, so the
advantages are [0.866, -0.866, -0.866, 0.866] (with normalize_by_std) or [0.5, -0.5, -0.5, 0.5].

Simplifications: no KL penalty to a reference model (as in Dr. GRPO / R1-Zero practice), one device,
rollouts sampled with the policy being trained (no separate inference engine).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from alignment.interop import eos_text, model_device
from alignment.loop import (
    Callback,
    Evaluate,
    StageLoop,
    StageResult,
    autocast,
    check_config,
)
from alignment.sampling import sample_completions
from alignment.sft import get_response_log_probs, tokenize_prompt_and_output
from basics.optim import AdamW

LossType = Literal["no_baseline", "reinforce_with_baseline", "grpo_clip"]


# ----------------------------------------------------------------------------------------------------
# Advantages and losses


def compute_group_normalized_rewards(
    reward_fn: Callable[[str, str], dict[str, float]],
    rollout_responses: Sequence[str],
    repeated_ground_truths: Sequence[str],
    group_size: int,
    advantage_eps: float,
    normalize_by_std: bool,
) -> tuple[Float[Tensor, " rollouts"], Float[Tensor, " rollouts"], dict[str, float]]:
    """Score each rollout and normalise rewards within consecutive groups of ``group_size``.

    Returns (advantages, raw_rewards, metadata) where metadata holds reward statistics.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if len(rollout_responses) != len(repeated_ground_truths):
        raise ValueError(
            f"got {len(rollout_responses)} responses but {len(repeated_ground_truths)} ground truths"
        )
    if len(rollout_responses) % group_size:
        raise ValueError(f"{len(rollout_responses)} rollouts do not split into groups of {group_size}")
    scores = [reward_fn(r, g) for r, g in zip(rollout_responses, repeated_ground_truths)]
    raw_rewards = torch.tensor([float(s["reward"]) for s in scores], dtype=torch.float32)
    grouped = raw_rewards.view(-1, group_size)  # (questions, group)
    # The group mean is the baseline: a response is good only relative to its siblings.
    advantages = grouped - grouped.mean(dim=1, keepdim=True)  # (questions, group)
    if normalize_by_std:
        # eps: a group of equal rewards has std 0 and advantages 0 (no signal), not 0/0.
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + advantage_eps)  # unbiased std
    metadata = {
        "reward_mean": float(raw_rewards.mean()),
        "reward_std": float(raw_rewards.std()) if len(raw_rewards) > 1 else 0.0,
        "reward_max": float(raw_rewards.max()),
        "reward_min": float(raw_rewards.min()),
    }
    for key in ("format_reward", "answer_reward"):
        if scores and key in scores[0]:
            metadata[key] = sum(float(s[key]) for s in scores) / len(scores)
    return advantages.reshape(-1), raw_rewards, metadata  # (questions, group) -> (rollouts,)


def compute_naive_policy_gradient_loss(
    raw_rewards_or_advantages: Float[Tensor, "batch 1"], policy_log_probs: Float[Tensor, "batch seq"]
) -> Float[Tensor, "batch seq"]:
    """Per-token REINFORCE loss -A * log pi (A broadcast over the sequence)."""
    return -raw_rewards_or_advantages * policy_log_probs


def compute_grpo_clip_loss(
    advantages: Float[Tensor, "batch 1"],
    policy_log_probs: Float[Tensor, "batch seq"],
    old_log_probs: Float[Tensor, "batch seq"],
    cliprange: float,
) -> tuple[Float[Tensor, "batch seq"], dict[str, Tensor]]:
    """Per-token clipped surrogate -min(rho A, clip(rho, 1-eps, 1+eps) A); metadata marks clipped tokens."""
    ratio = torch.exp(policy_log_probs - old_log_probs)  # rho = pi / pi_old per token, from log-probs
    unclipped = ratio * advantages  # (batch, seq): the (batch, 1) advantage broadcasts over tokens
    clipped = torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange) * advantages
    # The minimum is the pessimistic bound: moving rho beyond 1 +- eps earns no extra objective.
    loss = -torch.minimum(unclipped, clipped)
    # a token is "clipped" when the clipped term is the smaller one, i.e. its gradient is cut off
    was_clipped = clipped < unclipped
    return loss, {"clipped": was_clipped, "clip_fraction": was_clipped.float().mean()}


def compute_policy_gradient_loss(
    policy_log_probs: Float[Tensor, "batch seq"],
    loss_type: LossType,
    raw_rewards: Float[Tensor, "batch 1"] | None = None,
    advantages: Float[Tensor, "batch 1"] | None = None,
    old_log_probs: Float[Tensor, "batch seq"] | None = None,
    cliprange: float | None = None,
) -> tuple[Float[Tensor, "batch seq"], dict[str, Tensor]]:
    """Dispatch to the per-token loss for ``loss_type``, checking that the arguments it needs are given."""
    if loss_type == "no_baseline":
        if raw_rewards is None:
            raise ValueError("loss_type 'no_baseline' needs raw_rewards")
        return compute_naive_policy_gradient_loss(raw_rewards, policy_log_probs), {}
    if loss_type == "reinforce_with_baseline":
        if advantages is None:
            raise ValueError("loss_type 'reinforce_with_baseline' needs advantages")
        return compute_naive_policy_gradient_loss(advantages, policy_log_probs), {}
    if loss_type == "grpo_clip":
        if advantages is None or old_log_probs is None or cliprange is None:
            raise ValueError("loss_type 'grpo_clip' needs advantages, old_log_probs and cliprange")
        return compute_grpo_clip_loss(advantages, policy_log_probs, old_log_probs, cliprange)
    raise ValueError(
        f"unknown loss_type {loss_type!r}; choose no_baseline, reinforce_with_baseline or grpo_clip"
    )


def masked_mean(tensor: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of the elements where ``mask`` is True: sum / count, with no guard (an empty row gives NaN)."""
    mask = mask.to(tensor.dtype)
    if dim is None:
        return (tensor * mask).sum() / mask.sum()
    return (tensor * mask).sum(dim=dim) / mask.sum(dim=dim)


def grpo_microbatch_train_step(
    policy_log_probs: Float[Tensor, "batch seq"],
    response_mask: Bool[Tensor, "batch seq"],
    gradient_accumulation_steps: int,
    loss_type: LossType,
    raw_rewards: Float[Tensor, "batch 1"] | None = None,
    advantages: Float[Tensor, "batch 1"] | None = None,
    old_log_probs: Float[Tensor, "batch seq"] | None = None,
    cliprange: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token loss -> masked mean over each sequence -> mean over the batch -> / accumulation; backward."""
    if gradient_accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
    per_token, metadata = compute_policy_gradient_loss(
        policy_log_probs, loss_type, raw_rewards, advantages, old_log_probs, cliprange
    )
    # Mean over each sequence's response tokens (prompt and padding masked out), then over sequences;
    # divided by the accumulation steps so the summed microbatch gradients equal one batch mean.
    loss = masked_mean(per_token, response_mask, dim=-1).mean() / gradient_accumulation_steps
    loss.backward()
    if "clipped" in metadata:  # report the clip fraction over response tokens only
        metadata = {**metadata, "clip_fraction": masked_mean(metadata["clipped"].float(), response_mask)}
    return loss.detach(), metadata


# ----------------------------------------------------------------------------------------------------
# The training loop


@dataclass(frozen=True)
class GRPOConfig:
    steps: int = 40  # rollout batches (each followed by epochs_per_rollout_batch optimizer steps)
    prompts_per_step: int = 16  # questions per rollout batch
    group_size: int = 8  # rollouts per question (G)
    max_new_tokens: int = 60  # longest sampled response, in tokens
    temperature: float = 1.0  # sampling temperature for rollouts
    top_p: float = 1.0  # nucleus sampling for rollouts
    stop: tuple[str, ...] = ("</answer>",)  # responses are cut after the first stop string
    loss_type: LossType = "reinforce_with_baseline"  # no_baseline | reinforce_with_baseline | grpo_clip
    epochs_per_rollout_batch: int = 1  # optimizer steps on each rollout batch (>1: off-policy, use grpo_clip)
    cliprange: float = 0.2  # epsilon of the clipped surrogate
    advantage_eps: float = 1e-6  # added to the group std
    normalize_by_std: bool = True  # divide advantages by the group std
    microbatch_size: int = 32  # rollouts per forward/backward (gradient accumulation over the batch)
    learning_rate: float = 2e-4  # constant learning rate (tiny CPU models; ~1e-6 for 1B+ models)
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping threshold (0: no clipping)
    eval_every: int = 10  # rollout batches between evaluation callbacks (0: never)
    checkpoint_every: int = 10  # rollout batches between resumable checkpoints (0: only at the end)
    seed: int = 0  # question sampling and rollout seed

    def __post_init__(self) -> None:
        check_config(
            self,
            positive=("steps", "prompts_per_step", "max_new_tokens", "epochs_per_rollout_batch"),
            non_negative=("temperature", "advantage_eps", "weight_decay", "max_grad_norm"),
            unit_interval=("cliprange",),
        )
        check_config(
            self,
            positive=("microbatch_size", "learning_rate"),
            non_negative=("eval_every", "checkpoint_every"),
            # the group is its own baseline: a mean (and a std) of one reward is no baseline at all
            at_least_two=("group_size",),
        )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"GRPOConfig.top_p must be in (0, 1], got {self.top_p}")
        if self.loss_type not in ("no_baseline", "reinforce_with_baseline", "grpo_clip"):
            raise ValueError("GRPOConfig.loss_type must be no_baseline, reinforce_with_baseline or grpo_clip")
        if self.epochs_per_rollout_batch > 1 and self.loss_type != "grpo_clip":
            raise ValueError("several epochs per rollout batch are off-policy: use loss_type='grpo_clip'")


# ----------------------------------------------------------------------------------------------------
# Rollouts: sample, score, tokenize


@dataclass
class Rollouts:
    """One rollout batch: G responses for each of Q questions (rollouts = Q * G, question-major)."""

    prompts: list[str]  # (rollouts,) each prompt repeated G times in a row
    responses: list[str]  # (rollouts,) decoded, cut after the stop string
    advantages: Float[Tensor, " rollouts"]  # group-normalised rewards
    raw_rewards: Float[Tensor, " rollouts"]
    reward_stats: dict[str, float]
    microbatches: list[dict[str, Tensor]]  # tokenized chunks of microbatch_size rows, on the model's device


def tokenize_rollouts(
    tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], microbatch_size: int, device: Any
) -> list[dict[str, Tensor]]:
    """Prompt+response token ids, shifted labels and the response mask, in chunks of ``microbatch_size``.

    A response that stopped at EOS right away is empty: it is trained on as the EOS token (the policy's
    choice to stop is an action too), never as nothing (an empty mask would make its mean NaN).
    """
    texts = [r if r else eos_text(tokenizer) for r in responses]
    chunks = []
    for start in range(0, len(prompts), microbatch_size):
        end = start + microbatch_size
        data = tokenize_prompt_and_output(prompts[start:end], texts[start:end], tokenizer)
        chunks.append({k: v.to(device) for k, v in data.items()})  # each (micro, seq)
    return chunks


@torch.no_grad()
def add_log_probs(model: Any, microbatches: Sequence[dict[str, Tensor]], key: str) -> None:
    """Store ``model``'s per-token log-probs of each microbatch's labels under ``key`` (no gradient):
    the behaviour policy's ("old") log-probs for the clipped ratio, or a frozen reference's for a KL."""
    for data in microbatches:
        with autocast(model):
            data[key] = get_response_log_probs(model, data["input_ids"], data["labels"])["log_probs"]


def collect_rollouts(
    policy: Any,
    tokenizer: Any,
    questions: Sequence[tuple[str, Any]],
    reward_fn: Callable[[str, Any], dict[str, float]],
    config: GRPOConfig,
    generator: torch.Generator | None = None,
) -> Rollouts:
    """Sample ``group_size`` responses per question, score them, normalise within each group, tokenize."""
    # question-major (rollouts = Q * G): each group's G copies are contiguous, which is what
    # compute_group_normalized_rewards's view(-1, group_size) relies on
    prompts = [p for p, _ in questions for _ in range(config.group_size)]
    truths = [t for _, t in questions for _ in range(config.group_size)]
    responses = sample_completions(
        policy,
        tokenizer,
        prompts,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_p=config.top_p,
        stop=config.stop,
        batch_size=len(prompts),
        generator=generator,
    )
    # (rollouts,) each: the group is its own baseline, so no value model is needed
    advantages, raw_rewards, stats = compute_group_normalized_rewards(
        reward_fn, responses, truths, config.group_size, config.advantage_eps, config.normalize_by_std
    )
    device = model_device(policy)
    microbatches = tokenize_rollouts(tokenizer, prompts, responses, config.microbatch_size, device)
    for start, data in zip(range(0, len(prompts), config.microbatch_size), microbatches):
        rows = slice(start, start + config.microbatch_size)
        data["advantages"] = advantages[rows, None].to(device)  # (micro, 1): one advantage per sequence
        data["raw_rewards"] = raw_rewards[rows, None].to(device)
    # pi_old: the policy that sampled, recorded before the first update; later epochs are off-policy
    # and the clipped ratio pi / pi_old needs it (the on-policy losses do not)
    if config.loss_type == "grpo_clip":
        add_log_probs(policy, microbatches, "old_log_probs")
    return Rollouts(prompts, responses, advantages, raw_rewards, stats, microbatches)


# ----------------------------------------------------------------------------------------------------
# The policy update and the loop


def grpo_policy_update(
    policy: Any, rollouts: Rollouts, config: GRPOConfig, loop: StageLoop
) -> dict[str, float]:
    """``epochs_per_rollout_batch`` optimizer steps on one rollout batch, each accumulating gradients
    over every microbatch (so one step sees the whole batch, whatever the microbatch size)."""
    accumulation = len(rollouts.microbatches)  # each microbatch's loss is divided by this: one batch mean
    sums = {"loss": 0.0, "entropy": 0.0, "clipped": 0.0, "tokens": 0, "grad_norm": 0.0}
    # Epoch 1 is on-policy (rho = 1); later epochs reuse the same rollouts, which is what the
    # clipped ratio exists for.
    for _ in range(config.epochs_per_rollout_batch):
        loop.optimizer.zero_grad(set_to_none=True)
        epoch_loss = 0.0
        for data in rollouts.microbatches:
            with autocast(policy):  # log_probs, token_entropy: (micro, seq), aligned with labels
                out = get_response_log_probs(
                    policy, data["input_ids"], data["labels"], return_token_entropy=True
                )
            loss, meta = grpo_microbatch_train_step(
                out["log_probs"],
                data["response_mask"],
                accumulation,
                config.loss_type,
                raw_rewards=data["raw_rewards"],
                advantages=data["advantages"],
                old_log_probs=data.get("old_log_probs"),  # None unless grpo_clip
                cliprange=config.cliprange,
            )
            epoch_loss += float(loss)
            mask = data["response_mask"]  # (micro, seq): statistics over response tokens only
            tokens = int(mask.sum())
            sums["entropy"] += float((out["token_entropy"].detach() * mask).sum())
            sums["clipped"] += float(meta.get("clip_fraction", 0.0)) * tokens
            sums["tokens"] += tokens
        sums["grad_norm"] = loop.optimizer_step(epoch_loss)  # stops on a non-finite loss or gradient
        sums["loss"] += epoch_loss
    tokens = max(sums["tokens"], 1)
    return {
        "loss": sums["loss"] / config.epochs_per_rollout_batch,
        "entropy": sums["entropy"] / tokens,
        "clip_fraction": sums["clipped"] / tokens,
        "response_tokens": sums["tokens"] / (len(rollouts.prompts) * config.epochs_per_rollout_batch),
        "grad_norm": sums["grad_norm"],
    }


def train_grpo(
    policy: torch.nn.Module,
    tokenizer: Any,
    questions: Sequence[tuple[str, Any]],
    reward_fn: Callable[[str, Any], dict[str, float]],
    config: GRPOConfig,
    *,
    evaluate: Evaluate | None = None,
    callback: Callback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> StageResult:
    """GRPO on (prompt, ground_truth) pairs; ``callback(metrics)`` after every rollout batch.

    Each step: draw ``prompts_per_step`` questions, collect their rollouts (sample, score, normalise in
    groups, record old log-probs for the clipped loss), then update the policy on them. Checkpoints,
    resume and the divergence stop work as in ``alignment.sft.train_sft``.
    """
    if not questions:
        raise ValueError("train_grpo needs at least one (prompt, ground_truth) pair")
    optimizer = AdamW(
        policy.parameters(), lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )
    rng = random.Random(config.seed)
    generator = torch.Generator(device=model_device(policy)).manual_seed(config.seed)
    loop = StageLoop(
        "grpo",
        policy,
        optimizer,
        config,
        evaluate=evaluate,
        callback=callback,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        rngs={"questions": rng, "sampling": generator},
    )
    for _ in loop.steps(config.steps):
        # Questions drawn with replacement from a seeded RNG (restored on resume with the loop's state).
        chosen = [questions[rng.randrange(len(questions))] for _ in range(config.prompts_per_step)]
        # Rollouts are sampled without gradients by the current policy; the update then trains on them.
        rollouts = collect_rollouts(policy, tokenizer, chosen, reward_fn, config, generator)
        metrics = grpo_policy_update(policy, rollouts, config, loop)
        metrics["reward"] = rollouts.reward_stats["reward_mean"]
        metrics.update(
            {k: v for k, v in rollouts.reward_stats.items() if k in ("format_reward", "answer_reward")}
        )
        loop.end_step(metrics)
    return loop.result()
