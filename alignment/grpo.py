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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from alignment.interop import eos_text, model_device
from alignment.sampling import sample_completions
from alignment.sft import get_response_log_probs, tokenize_prompt_and_output
from basics.nn_utils import clip_gradients
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
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    if normalize_by_std:
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
    return advantages.reshape(-1), raw_rewards, metadata


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
    ratio = torch.exp(policy_log_probs - old_log_probs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange) * advantages
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
    max_grad_norm: float = 1.0  # gradient clipping threshold
    eval_every: int = 10  # rollout batches between evaluation callbacks (0: never)
    seed: int = 0  # question sampling and rollout seed


def train_grpo(
    policy: torch.nn.Module,
    tokenizer: Any,
    questions: Sequence[tuple[str, Any]],
    reward_fn: Callable[[str, Any], dict[str, float]],
    config: GRPOConfig,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
) -> Iterator[dict[str, float]]:
    """GRPO on (prompt, ground_truth) pairs; yields one metrics dict per rollout batch.

    Each step samples ``group_size`` rollouts for ``prompts_per_step`` questions, computes group-normalised
    advantages, records the old log-probs (when the loss needs them), then takes
    ``epochs_per_rollout_batch`` optimizer steps, each accumulating gradients over microbatches.
    """
    if not questions:
        raise ValueError("train_grpo needs at least one (prompt, ground_truth) pair")
    if config.epochs_per_rollout_batch > 1 and config.loss_type != "grpo_clip":
        raise ValueError("several epochs per rollout batch are off-policy: use loss_type='grpo_clip'")
    device = model_device(policy)
    optimizer = AdamW(
        policy.parameters(), lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )
    rng = random.Random(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    rollouts = config.prompts_per_step * config.group_size
    micro = min(config.microbatch_size, rollouts)
    accumulation = -(-rollouts // micro)  # ceil
    needs_old = config.loss_type == "grpo_clip"
    for step in range(1, config.steps + 1):
        chosen = [questions[rng.randrange(len(questions))] for _ in range(config.prompts_per_step)]
        prompts = [p for p, _ in chosen for _ in range(config.group_size)]
        truths = [t for _, t in chosen for _ in range(config.group_size)]
        responses = sample_completions(
            policy,
            tokenizer,
            prompts,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            stop=config.stop,
            batch_size=rollouts,
            generator=generator,
        )
        advantages, raw_rewards, reward_meta = compute_group_normalized_rewards(
            reward_fn, responses, truths, config.group_size, config.advantage_eps, config.normalize_by_std
        )
        # a response that stopped at EOS right away is the EOS token: train on it rather than on nothing
        eos = eos_text(tokenizer)
        texts = [r if r else eos for r in responses]
        batches = []
        for start in range(0, rollouts, micro):
            data = tokenize_prompt_and_output(
                prompts[start : start + micro], texts[start : start + micro], tokenizer
            )
            data = {k: v.to(device) for k, v in data.items()}
            data["advantages"] = advantages[start : start + micro, None].to(device)
            data["raw_rewards"] = raw_rewards[start : start + micro, None].to(device)
            if needs_old:
                with torch.no_grad():
                    data["old_log_probs"] = get_response_log_probs(policy, data["input_ids"], data["labels"])[
                        "log_probs"
                    ]
            batches.append(data)

        policy.train()
        loss_total, entropy_sum, clip_sum, tokens = 0.0, 0.0, 0.0, 0
        for _ in range(config.epochs_per_rollout_batch):
            optimizer.zero_grad(set_to_none=True)
            for data in batches:
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
                    old_log_probs=data.get("old_log_probs"),
                    cliprange=config.cliprange,
                )
                loss_total += float(loss)
                mask = data["response_mask"]
                entropy_sum += float((out["token_entropy"].detach() * mask).sum())
                if "clip_fraction" in meta:
                    clip_sum += float(meta["clip_fraction"]) * int(mask.sum())
                tokens += int(mask.sum())
            grad_norm = clip_gradients(policy.parameters(), config.max_grad_norm)
            optimizer.step()
        policy.eval()
        metrics = {
            "step": step,
            "loss": loss_total / config.epochs_per_rollout_batch,
            "reward": reward_meta["reward_mean"],
            "entropy": entropy_sum / max(tokens, 1),
            "clip_fraction": clip_sum / max(tokens, 1),
            "response_tokens": tokens / (rollouts * config.epochs_per_rollout_batch),
            "grad_norm": float(grad_norm),
        }
        metrics.update({k: v for k, v in reward_meta.items() if k in ("format_reward", "answer_reward")})
        if (
            evaluate is not None
            and config.eval_every
            and (step % config.eval_every == 0 or step == config.steps)
        ):
            metrics.update(evaluate(policy))
        yield metrics
