"""Direct Preference Optimization (DPO): the per-instance loss, the batched loss on precomputed
log-probabilities, and a training loop with cached reference log-probs.

Follows Rafailov et al. 2023 and the course's alignment handout (DPO section). With sequence log-probs
of the response given the prompt,

    loss = -log sigmoid( beta * [ (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)) ] )

and the *implicit rewards* r(y) = beta * (log pi(y|x) - log ref(y|x)); "reward accuracy" is the fraction of
pairs with r(y_w) > r(y_l) and the "margin" is r(y_w) - r(y_l).

Worked example: beta = 0.1 and log-ratio difference 2.0 give loss = -log sigmoid(0.2) = 0.5981.

Simplification: the sequence log-prob covers the response tokens plus EOS (the prompt tokens would cancel
in the difference anyway); the reference model stays in eval mode under ``torch.no_grad``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from alignment.interop import eos_text, model_device
from alignment.loop import (
    Callback,
    Evaluate,
    StageLoop,
    StageResult,
    autocast,
    check_config,
    set_learning_rate,
)
from alignment.sft import ALPACA_TEMPLATE, get_response_log_probs, tokenize_prompt_and_output
from basics.optim import AdamW

PLAIN_TEMPLATE = "{prompt}{response}"  # the prompt already holds its own template (e.g. R1-Zero)


def sequence_log_probs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    template: str = ALPACA_TEMPLATE,
) -> Float[Tensor, " batch"]:
    """Sum of log pi(response + EOS | templated prompt) for each pair, on the model's device."""
    # The template up to where the response goes is the prompt; the response ends with EOS, so
    # stopping where the response stops is part of what is preferred.
    head = [template.format(prompt=p, response="") for p in prompts]
    tails = [r + eos_text(tokenizer) for r in responses]
    data = tokenize_prompt_and_output(head, tails, tokenizer)
    device = model_device(model)
    log_probs = get_response_log_probs(model, data["input_ids"].to(device), data["labels"].to(device))[
        "log_probs"
    ]
    # log pi(y | x) = sum over response tokens of log pi(token | prefix): (batch, seq) -> (batch,)
    return (log_probs * data["response_mask"].to(device)).sum(dim=-1)


def dpo_loss(
    policy_chosen: Float[Tensor, " batch"],
    policy_rejected: Float[Tensor, " batch"],
    ref_chosen: Float[Tensor, " batch"],
    ref_rejected: Float[Tensor, " batch"],
    beta: float,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean DPO loss over a batch of sequence log-probs, with implicit-reward accuracy and margin."""
    # The implicit reward r(x, y) = beta log(pi(y|x) / pi_ref(y|x)) (Rafailov et al., 2023).
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    margin = chosen_reward - rejected_reward  # (batch,)
    # -log sigmoid(margin): the Bradley-Terry likelihood that y_w beats y_l; logsigmoid is stable
    # for large |margin| where log(sigmoid(.)) would round to log(0).
    loss = -F.logsigmoid(margin).mean()
    metrics = {
        "reward_accuracy": (margin > 0).float().mean().detach(),
        "reward_margin": margin.mean().detach(),
        "chosen_reward": chosen_reward.mean().detach(),
        "rejected_reward": rejected_reward.mean().detach(),
    }
    return loss, metrics


def per_instance_dpo_loss(
    lm: Any,
    lm_ref: Any,
    tokenizer: Any,
    beta: float,
    prompt: str,
    response_chosen: str,
    response_rejected: str,
    template: str = ALPACA_TEMPLATE,
) -> Tensor:
    """DPO loss of one preference pair; the reference model runs without gradients on its own device and
    the result lives on the policy's device."""
    # One batch of two: row 0 the chosen response, row 1 the rejected one.
    prompts, responses = [prompt, prompt], [response_chosen, response_rejected]
    policy = sequence_log_probs(lm, tokenizer, prompts, responses, template)
    with torch.no_grad():
        ref = sequence_log_probs(lm_ref, tokenizer, prompts, responses, template).to(policy.device)
    loss, _ = dpo_loss(policy[:1], policy[1:], ref[:1], ref[1:], beta)
    return loss


@torch.no_grad()
def preference_metrics(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str, str]],
    template: str = PLAIN_TEMPLATE,
    batch_size: int = 64,
) -> dict[str, float]:
    """How often the model itself prefers the chosen response: log pi(y_w|x) > log pi(y_l|x)."""
    wins, gap = 0, 0.0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        chosen = sequence_log_probs(
            model, tokenizer, [p for p, _, _ in chunk], [c for _, c, _ in chunk], template
        )
        rejected = sequence_log_probs(
            model, tokenizer, [p for p, _, _ in chunk], [r for _, _, r in chunk], template
        )
        # Summed per chunk, divided once at the end: the mean over all pairs, whatever the chunking.
        wins += int((chosen > rejected).sum())
        gap += float((chosen - rejected).sum())
    return {"preference_accuracy": wins / len(pairs), "log_prob_gap": gap / len(pairs)}


@dataclass(frozen=True)
class DPOConfig:
    steps: int = 100  # optimizer steps
    batch_size: int = 16  # preference pairs per step
    beta: float = 0.1  # DPO temperature
    learning_rate: float = 3e-5  # constant learning rate after warmup
    warmup_steps: int = 10  # linear warmup steps
    max_grad_norm: float = 1.0  # gradient clipping threshold (0: no clipping)
    alpaca_template: bool = False  # wrap prompts in the Alpaca template (else the prompt is used as is)
    eval_every: int = 25  # steps between evaluation callbacks (0: never)
    checkpoint_every: int = 50  # steps between resumable checkpoints (0: only at the end)
    seed: int = 0  # sampling seed for batches

    def __post_init__(self) -> None:
        check_config(
            self,
            positive=("steps", "batch_size", "beta", "learning_rate"),
            non_negative=("warmup_steps", "max_grad_norm", "eval_every", "checkpoint_every"),
        )


@torch.no_grad()
def reference_log_probs(
    reference: Any, tokenizer: Any, pairs: Sequence[tuple[str, str, str]], template: str, batch_size: int = 64
) -> tuple[Float[Tensor, " pairs"], Float[Tensor, " pairs"]]:
    """Sequence log-probs of every chosen and rejected response under the frozen reference."""
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        prompts = [p for p, _, _ in chunk]
        chosen.append(sequence_log_probs(reference, tokenizer, prompts, [c for _, c, _ in chunk], template))
        rejected.append(sequence_log_probs(reference, tokenizer, prompts, [r for _, _, r in chunk], template))
    return torch.cat(chosen), torch.cat(rejected)


def train_dpo(
    policy: torch.nn.Module,
    reference: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str, str]],
    config: DPOConfig,
    *,
    evaluate: Evaluate | None = None,
    callback: Callback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> StageResult:
    """Train ``policy`` on (prompt, chosen, rejected) triples; ``callback(metrics)`` after every step.

    Reference log-probs are computed once for every pair before training (the reference never changes).
    Checkpoints, resume and the divergence stop work as in ``alignment.sft.train_sft``.
    """
    if not pairs:
        raise ValueError("train_dpo needs at least one (prompt, chosen, rejected) triple")
    template = ALPACA_TEMPLATE if config.alpaca_template else PLAIN_TEMPLATE
    device = model_device(policy)
    # (pairs,) each, computed once: the reference never changes, so it never runs again.
    ref_chosen, ref_rejected = (
        t.to(device) for t in reference_log_probs(reference, tokenizer, pairs, template)
    )
    optimizer = AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=0.0)
    rng = random.Random(config.seed)
    loop = StageLoop(
        "dpo",
        policy,
        optimizer,
        config,
        evaluate=evaluate,
        callback=callback,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        rngs={"batches": rng},
    )
    for step in loop.steps(config.steps):
        lr = config.learning_rate * min(1.0, step / max(1, config.warmup_steps))  # warmup, then constant
        set_learning_rate(optimizer, lr)
        # Pairs drawn with replacement; the same indices pick the precomputed reference log-probs.
        index = [rng.randrange(len(pairs)) for _ in range(config.batch_size)]
        prompts = [pairs[i][0] for i in index]
        with autocast(policy):
            chosen = sequence_log_probs(policy, tokenizer, prompts, [pairs[i][1] for i in index], template)
            rejected = sequence_log_probs(policy, tokenizer, prompts, [pairs[i][2] for i in index], template)
        loss, stats = dpo_loss(chosen, rejected, ref_chosen[index], ref_rejected[index], config.beta)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = loop.optimizer_step(float(loss.detach()))
        stats = {k: float(v) for k, v in stats.items()}
        loop.end_step({"loss": float(loss.detach()), "lr": lr, **stats, "grad_norm": grad_norm})
    return loop.result()


def sample_preference_pairs(
    model: Any,
    tokenizer: Any,
    examples: Sequence[tuple[str, Any, str, str]],
    reward_fn: Callable[[str, Any], dict[str, float]],
    *,
    samples_per_prompt: int = 4,
    pairs_per_prompt: int = 1,
    max_new_tokens: int = 60,
    temperature: float = 1.0,
    stop: Sequence[str] = ("</answer>",),
    generator: torch.Generator | None = None,
) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """On-policy preference data: for each ``(prompt, ground_truth, fallback_chosen, fallback_rejected)``,
    sample responses and pair correct ones (chosen) with incorrect ones (rejected), up to
    ``pairs_per_prompt`` distinct pairs; when the samples are all correct or all wrong, the fallback
    (e.g. the worked solution / a corrupted one) fills the gap.

    Returns the (prompt, chosen, rejected) triples and counts of how many sides came from the policy."""
    from alignment.sampling import sample_completions

    prompts = [e[0] for e in examples for _ in range(samples_per_prompt)]
    responses = sample_completions(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        stop=stop,
        generator=generator,
    )
    pairs, counts = [], {"policy_chosen": 0, "policy_rejected": 0}
    for i, (prompt, truth, fallback_chosen, fallback_rejected) in enumerate(examples):
        group = responses[i * samples_per_prompt : (i + 1) * samples_per_prompt]  # this prompt's samples
        rewards = [float(reward_fn(r, truth)["reward"]) for r in group]
        good = list(dict.fromkeys(r for r, w in zip(group, rewards) if w > 0.5))  # distinct, in order
        bad = list(dict.fromkeys(r for r, w in zip(group, rewards) if w <= 0.5))
        counts["policy_chosen"] += bool(good)
        counts["policy_rejected"] += bool(bad)
        # Every (correct, incorrect) combination, a fallback standing in for a side the policy lacked.
        combos = [(g, b) for g in good or [fallback_chosen] for b in bad or [fallback_rejected]]
        pairs.extend((prompt, g, b) for g, b in combos[:pairs_per_prompt])
    return pairs, counts
