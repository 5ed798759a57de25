"""Proximal Policy Optimization for language models (RLHF as first described): a learned value function,
GAE, a per-token KL penalty to the frozen SFT reference, and clipped policy and value losses.

Follows Ziegler et al. 2019, Stiennon et al. 2020 and Ouyang et al. 2022 (InstructGPT), with the
details of Huang et al. 2024 ("The N+ implementation details of RLHF with PPO"). Each response token
a_t is an action taken in state s_t (the prompt and the tokens before it). The reward is zero until the
end, except for a KL penalty that keeps the policy near the reference:

    r_t = -beta * (log pi_old(a_t|s_t) - log pi_ref(a_t|s_t))     (+ score(x, y) at the last token)

A value model V(s_t) (the policy's network with a scalar head) estimates the return. Generalised
advantage estimation (Schulman et al. 2016) blends n-step estimates with lambda:

    delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)          (V after the last token is 0)
    A_t     = delta_t + gamma * lambda * A_{t+1},        returns R_t = A_t + V(s_t)

Worked example (gamma = lambda = 1): rewards [0, 0, 1] and values [0.5, 0.5, 0.5] give deltas
[0, 0, 0.5] and advantages [0.5, 0.5, 0.5]; with lambda = 0 the advantages are the deltas.

The policy loss is the clipped surrogate of ``alignment.grpo.compute_grpo_clip_loss`` with per-token
advantages (whitened over the batch); the value loss is clipped around the old values:

    L_V = 1/2 * max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)

Several epochs go over each rollout batch, in microbatches, one optimizer step per ``minibatch_size``
rollouts. GRPO is this algorithm without the value model: it replaces V(s_t) by the mean reward of a
group of responses to the same prompt, and (in R1-Zero practice) drops the KL term.

Simplifications: a separate value model (no shared trunk); rollouts sampled by the policy being trained;
the score comes from a reward model or any verifiable reward function; no reward whitening.
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

from alignment.grpo import add_log_probs, compute_grpo_clip_loss, masked_mean, tokenize_rollouts
from alignment.interop import model_device
from alignment.loop import Callback, Evaluate, StageLoop, StageResult, autocast, check_config
from alignment.reward_model import ScalarHeadModel, score_batched
from alignment.sampling import sample_completions
from alignment.sft import get_response_log_probs
from basics.optim import AdamW

Scorer = Callable[[list[str], list[str], list[Any]], tuple[Tensor, dict[str, float]]]


# ----------------------------------------------------------------------------------------------------
# Pure pieces: KL, rewards, GAE, whitening, losses


def kl_penalty(
    log_probs: Float[Tensor, "batch seq"],
    ref_log_probs: Float[Tensor, "batch seq"],
    estimator: Literal["k1", "k3"] = "k1",
) -> Float[Tensor, "batch seq"]:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled by pi (Schulman, "Approximating KL
    divergence", 2020): k1 = log pi - log pi_ref (unbiased, can be negative); k3 = (rho - 1) - log rho with
    rho = pi_ref / pi (unbiased and never negative)."""
    log_ratio = log_probs - ref_log_probs  # log pi / pi_ref
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio  # (rho - 1) - log rho with log rho = -log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; choose k1 or k3")


def per_token_rewards(
    scores: Float[Tensor, " batch"],
    kl: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    kl_coef: float,
) -> Float[Tensor, "batch seq"]:
    """-kl_coef * kl on every response token, plus the sequence's score on its last response token."""
    # The KL penalty is paid token by token; the score arrives once, at the end of the episode.
    rewards = torch.where(mask, -kl_coef * kl, torch.zeros_like(kl))  # (batch, seq)
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (mask * positions).argmax(dim=1)  # (batch,) index of each row's last response token
    rewards[torch.arange(len(scores), device=mask.device), last] += scores.to(rewards.dtype)
    return rewards


def compute_gae(
    rewards: Float[Tensor, "batch seq"],
    values: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    gamma: float,
    lam: float,
) -> tuple[Float[Tensor, "batch seq"], Float[Tensor, "batch seq"]]:
    """Advantages and returns by GAE(gamma, lambda) over each row's response tokens (zero elsewhere).

    One backward sweep over positions, vectorised over the batch: ``carry`` holds A_{t+1}, and is cut to
    zero wherever position t+1 is not a response token (the episode ended at t).
    """
    mask_f = mask.to(values.dtype)
    batch, seq = values.shape
    advantages = torch.zeros_like(values)
    carry = values.new_zeros(batch)  # A_{t+1}
    next_value = values.new_zeros(batch)  # V(s_{t+1}), 0 past the last token
    for t in reversed(range(seq)):  # A_t needs A_{t+1}: a sweep from the end
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # TD error r_t + gamma V_{t+1} - V_t
        carry = (delta + gamma * lam * carry) * mask_f[:, t]  # A_t = delta_t + gamma lambda A_{t+1}
        advantages[:, t] = carry
        next_value = values[:, t] * mask_f[:, t]  # V_t for step t-1; 0 outside the response
    # Returns R_t = A_t + V_t: the value function's regression target.
    return advantages, (advantages + values) * mask_f


def compute_gae_reference(
    rewards: list[list[float]], values: list[list[float]], gamma: float, lam: float
) -> list[list[float]]:
    """GAE as a plain loop over one episode at a time (lists of each row's response-token rewards and
    values): the definition, for checking ``compute_gae``."""
    out = []
    for r, v in zip(rewards, values):
        advantages = [0.0] * len(r)
        running = 0.0
        for t in reversed(range(len(r))):
            next_v = v[t + 1] if t + 1 < len(r) else 0.0
            delta = r[t] + gamma * next_v - v[t]
            running = delta + gamma * lam * running
            advantages[t] = running
        out.append(advantages)
    return out


def whiten(x: Float[Tensor, "batch seq"], mask: Bool[Tensor, "batch seq"], eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the masked entries (population variance); zero outside the mask."""
    # Statistics over response tokens only: padding and prompt positions would drag the mean to 0.
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return torch.where(mask, (x - mean) * torch.rsqrt(var + eps), torch.zeros_like(x))


def clipped_value_loss(
    values: Float[Tensor, "batch seq"],
    old_values: Float[Tensor, "batch seq"],
    returns: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    cliprange_value: float,
) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
    """1/2 max((V - R)^2, (clipped V - R)^2), averaged over response tokens; also the share of tokens whose
    clipped term was the larger one (the update was cut there)."""
    # The value may move at most cliprange_value from where it was when the rollouts were made ...
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped - returns) ** 2
    # ... and the max (the pessimistic choice, as min is for the policy) removes the gain beyond it.
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    return loss, {"value_clip_fraction": masked_mean((clipped_loss > unclipped_loss).float(), mask).detach()}


def ppo_policy_loss(
    log_probs: Float[Tensor, "batch seq"],
    old_log_probs: Float[Tensor, "batch seq"],
    advantages: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    cliprange: float,
) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
    """The clipped surrogate per token (GRPO's, with per-token advantages), averaged over response tokens;
    with the clip fraction and the approximate KL(pi_old || pi) of this update."""
    per_token, meta = compute_grpo_clip_loss(advantages, log_probs, old_log_probs, cliprange)
    log_ratio = (log_probs - old_log_probs).detach()  # log pi / pi_old, statistics only
    stats = {
        "clip_fraction": masked_mean(meta["clipped"].float(), mask),
        "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),  # k3 of pi_old vs pi
    }
    return masked_mean(per_token, mask), stats


def explained_variance(
    values: Float[Tensor, "batch seq"], returns: Float[Tensor, "batch seq"], mask: Bool[Tensor, "batch seq"]
) -> float:
    """1 - Var[R - V] / Var[R] over response tokens: 1 is a perfect value function, 0 no better than the
    mean, negative worse than the mean (NaN when the returns do not vary)."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    residual = returns - values
    var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
    return float(1 - var_residual / var_returns) if float(var_returns) > 0 else float("nan")


# ----------------------------------------------------------------------------------------------------
# Where the score comes from


def reward_model_scorer(
    reward_model: ScalarHeadModel, tokenizer: Any, verifier: Callable[[str, Any], dict] | None = None
) -> Scorer:
    """Scores from a reward model; with a ``verifier`` the rollouts' true reward is logged beside them."""

    def scorer(
        prompts: list[str], responses: list[str], truths: list[Any]
    ) -> tuple[Tensor, dict[str, float]]:
        scores = score_batched(reward_model, tokenizer, prompts, responses)
        stats = {"rm_score": float(scores.mean())}
        if verifier is not None:
            stats["true_reward"] = sum(
                float(verifier(r, t)["reward"]) for r, t in zip(responses, truths)
            ) / len(responses)
        return scores, stats

    return scorer


def verifier_scorer(reward_fn: Callable[[str, Any], dict]) -> Scorer:
    """Scores from a verifiable reward function ``(response, ground_truth) -> {"reward", ...}``."""

    def scorer(
        prompts: list[str], responses: list[str], truths: list[Any]
    ) -> tuple[Tensor, dict[str, float]]:
        scores = torch.tensor([float(reward_fn(r, t)["reward"]) for r, t in zip(responses, truths)])
        return scores, {"true_reward": float(scores.mean())}

    return scorer


# ----------------------------------------------------------------------------------------------------
# Config, rollouts, update, loop


@dataclass(frozen=True)
class PPOConfig:
    steps: int = 40  # rollout batches
    rollouts_per_step: int = 128  # prompts sampled (one response each) per rollout batch
    max_new_tokens: int = 60  # longest sampled response, in tokens
    temperature: float = 1.0  # sampling temperature for rollouts
    top_p: float = 1.0  # nucleus sampling for rollouts
    stop: tuple[str, ...] = ("</answer>",)  # responses are cut after the first stop string
    kl_coef: float = 0.05  # beta of the per-token KL penalty to the reference (0: none)
    kl_estimator: Literal["k1", "k3"] = "k1"  # per-token KL estimate used in the reward
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE lambda
    ppo_epochs: int = 2  # passes over each rollout batch
    minibatch_size: int = 64  # rollouts per optimizer step (a multiple of microbatch_size)
    microbatch_size: int = 32  # rollouts per forward/backward
    cliprange: float = 0.2  # epsilon of the clipped policy ratio
    cliprange_value: float = 0.2  # epsilon of the value clipping
    vf_coef: float = 0.5  # weight of the value loss
    whiten_advantages: bool = True  # normalise advantages over the batch's response tokens
    learning_rate: float = 2e-4  # policy learning rate (tiny CPU models; ~1e-6 for 1B+ models)
    value_learning_rate: float = 1e-3  # value model learning rate
    max_grad_norm: float = 1.0  # gradient clipping threshold, per model (0: no clipping)
    eval_every: int = 10  # rollout batches between evaluation callbacks (0: never)
    checkpoint_every: int = 10  # rollout batches between resumable checkpoints (0: only at the end)
    seed: int = 0  # question sampling, rollout and shuffling seed

    def __post_init__(self) -> None:
        check_config(
            self,
            positive=("steps", "rollouts_per_step", "max_new_tokens", "ppo_epochs", "minibatch_size"),
            non_negative=("temperature", "kl_coef", "max_grad_norm", "eval_every", "checkpoint_every"),
            unit_interval=("gamma", "lam", "cliprange"),
        )
        check_config(
            self,
            positive=("microbatch_size", "cliprange_value", "learning_rate", "value_learning_rate"),
            non_negative=("vf_coef",),
        )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"PPOConfig.top_p must be in (0, 1], got {self.top_p}")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"PPOConfig.kl_estimator must be k1 or k3, got {self.kl_estimator!r}")
        if self.minibatch_size % self.microbatch_size or self.rollouts_per_step % self.minibatch_size:
            raise ValueError(
                "PPOConfig: rollouts_per_step must be a multiple of minibatch_size, and minibatch_size "
                f"of microbatch_size (got {self.rollouts_per_step}, {self.minibatch_size}, {self.microbatch_size})"
            )
        if self.whiten_advantages and self.rollouts_per_step < 2:
            raise ValueError(
                f"PPOConfig.rollouts_per_step must be >= 2 to whiten advantages, got {self.rollouts_per_step}"
            )


@dataclass
class PPORollouts:
    """One rollout batch, tokenized in microbatches that carry everything the update needs."""

    prompts: list[str]  # (rollouts,)
    responses: list[str]  # (rollouts,)
    microbatches: list[dict[str, Tensor]]  # input_ids, labels, response_mask, old/ref log-probs, values, ...
    stats: dict[str, float]  # score, KL to the reference, explained variance, ...


@torch.no_grad()
def _add_values(value_model: ScalarHeadModel, microbatches: Sequence[dict[str, Tensor]]) -> None:
    for data in microbatches:
        with autocast(value_model):
            data["old_values"] = value_model(data["input_ids"]).float()  # (micro, seq): V(s_t) per label t


def _concat(microbatches: Sequence[dict[str, Tensor]], key: str) -> Tensor:
    """Stack one key of every microbatch into (rollouts, longest seq), zero-padded on the right."""
    seq = max(m[key].shape[1] for m in microbatches)
    return torch.cat([torch.nn.functional.pad(m[key], (0, seq - m[key].shape[1])) for m in microbatches])


def collect_ppo_rollouts(
    policy: Any,
    value_model: ScalarHeadModel,
    reference: Any,
    tokenizer: Any,
    questions: Sequence[tuple[str, Any]],
    scorer: Scorer,
    config: PPOConfig,
    generator: torch.Generator | None = None,
) -> PPORollouts:
    """Sample a response per question, score it, and compute per-token rewards, advantages and returns."""
    prompts, truths = [p for p, _ in questions], [t for _, t in questions]
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
    scores, stats = scorer(prompts, responses, truths)
    micro = tokenize_rollouts(tokenizer, prompts, responses, config.microbatch_size, model_device(policy))
    # Rollouts are scored by three frozen views of the batch: pi_old, pi_ref and V_old.
    add_log_probs(policy, micro, "old_log_probs")  # pi_old: the sampling policy, frozen for this batch
    add_log_probs(reference, micro, "ref_log_probs")  # pi_ref: the SFT policy, frozen for the whole run
    _add_values(value_model, micro)
    # GAE over the whole batch at once (one padded tensor), then back into the microbatches
    mask = _concat(micro, "response_mask")  # (rollouts, seq)
    kl = kl_penalty(_concat(micro, "old_log_probs"), _concat(micro, "ref_log_probs"), config.kl_estimator)
    values = _concat(micro, "old_values")
    rewards = per_token_rewards(scores.to(mask.device), kl, mask, config.kl_coef)
    advantages, returns = compute_gae(rewards, values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    for i, data in enumerate(micro):
        # Microbatch i holds rollouts [i * micro, (i + 1) * micro) padded to its own longest row.
        rows, width = (
            slice(i * config.microbatch_size, (i + 1) * config.microbatch_size),
            data["labels"].shape[1],
        )
        data["advantages"], data["returns"] = advantages[rows, :width], returns[rows, :width]  # (micro, seq)
    stats |= {
        "score": float(scores.mean()),
        "kl": float((kl * mask).sum(dim=1).mean()),  # KL(pi || pi_ref) per sequence
        "explained_variance": explained_variance(values, returns, mask),
        "response_tokens": float(mask.sum(dim=1).float().mean()),
    }
    return PPORollouts(prompts, responses, micro, stats)


def _microbatch_losses(policy: Any, value_model: ScalarHeadModel, data: dict[str, Tensor], config: PPOConfig):
    """Policy and value losses of one microbatch, with their statistics."""
    mask = data["response_mask"]  # (micro, seq)
    with autocast(policy):
        out = get_response_log_probs(policy, data["input_ids"], data["labels"], return_token_entropy=True)
    with autocast(value_model):
        values = value_model(data["input_ids"]).float()  # (micro, seq)
    pg_loss, pg_stats = ppo_policy_loss(
        out["log_probs"], data["old_log_probs"], data["advantages"], mask, config.cliprange
    )
    vf_loss, vf_stats = clipped_value_loss(
        values, data["old_values"], data["returns"], mask, config.cliprange_value
    )
    stats = {"policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(), **pg_stats, **vf_stats}
    stats["entropy"] = masked_mean(out["token_entropy"].detach(), mask)
    # One backward for both networks: the policy's parameters get only the policy loss's gradient,
    # the value model's only vf_coef times the value loss's (they share no parameters).
    return pg_loss + config.vf_coef * vf_loss, stats


def ppo_update(
    policy: Any,
    value_model: ScalarHeadModel,
    rollouts: PPORollouts,
    config: PPOConfig,
    loop: StageLoop,
    rng: random.Random,
) -> dict[str, float]:
    """``ppo_epochs`` passes over the rollout batch (microbatches in a fresh order each epoch), one
    optimizer step per ``minibatch_size`` rollouts; returns the mean of each statistic."""
    # Several optimizer steps per rollout batch (unlike GRPO's one per epoch): PPO's minibatches.
    per_step = config.minibatch_size // config.microbatch_size  # microbatches accumulated per step
    totals: dict[str, float] = {}
    count = 0
    for _ in range(config.ppo_epochs):
        order = list(range(len(rollouts.microbatches)))
        rng.shuffle(order)  # a fresh minibatch split each epoch, from the loop's seeded (resumable) RNG
        for start in range(0, len(order), per_step):
            loop.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for i in order[start : start + per_step]:
                loss, stats = _microbatch_losses(policy, value_model, rollouts.microbatches[i], config)
                (loss / per_step).backward()  # accumulate: one step sees the mean over the minibatch
                step_loss += float(loss.detach()) / per_step
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
            totals["value_grad_norm"] = loop.clip(value_model.parameters(), "the value gradient norm")
            totals["grad_norm"] = loop.optimizer_step(step_loss, policy.parameters())
    norms = {k: totals.pop(k) for k in ("grad_norm", "value_grad_norm")}  # the last step's, not averaged
    return {k: v / count for k, v in totals.items()} | norms


def train_ppo(
    policy: torch.nn.Module,
    value_model: ScalarHeadModel,
    reference: Any,
    tokenizer: Any,
    questions: Sequence[tuple[str, Any]],
    scorer: Scorer,
    config: PPOConfig,
    *,
    evaluate: Evaluate | None = None,
    callback: Callback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> StageResult:
    """PPO on (prompt, ground_truth) pairs; ``callback(metrics)`` after every rollout batch.

    ``scorer``: ``reward_model_scorer(...)`` or ``verifier_scorer(...)``. ``reference`` is never updated.
    The policy and the value model share one AdamW (a learning rate each); both are checkpointed.
    """
    if not questions:
        raise ValueError("train_ppo needs at least one (prompt, ground_truth) pair")
    # One optimizer, two parameter groups, a rate each (by default the value model's is 5x the policy's).
    groups = [
        {"params": list(policy.parameters()), "lr": config.learning_rate},
        {"params": list(value_model.parameters()), "lr": config.value_learning_rate},
    ]
    optimizer = AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=0.0)
    rng = random.Random(config.seed)
    generator = torch.Generator(device=model_device(policy)).manual_seed(config.seed)
    loop = StageLoop(
        "ppo",
        policy,
        optimizer,
        config,
        evaluate=evaluate,
        callback=callback,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        rngs={"questions": rng, "sampling": generator},
        extra_modules={"value_model": value_model},
    )
    for _ in loop.steps(config.steps):
        chosen = [questions[rng.randrange(len(questions))] for _ in range(config.rollouts_per_step)]
        value_model.eval()  # V(s_t) at collection time becomes old_values, the clipping anchor
        rollouts = collect_ppo_rollouts(
            policy, value_model, reference, tokenizer, chosen, scorer, config, generator
        )
        value_model.train()  # then both networks learn from the same rollouts
        metrics = ppo_update(policy, value_model, rollouts, config, loop, rng)
        loop.end_step(rollouts.stats | metrics)
    return loop.result()
