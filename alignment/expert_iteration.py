"""Expert iteration: sample several responses per question, keep the ones the verifier accepts, and
fine-tune on them with SFT -- the course's simpler baseline before GRPO.

Follows the course's alignment handout (expert iteration section; Anthony et al. 2017, Zelikman et al. 2022
"STaR"). Each iteration:

    1. sample ``samples_per_question`` responses for ``questions_per_iteration`` questions,
    2. keep the (prompt, response) pairs with reward 1 (duplicates removed),
    3. run ``sft_steps`` SFT steps on the kept pairs (``alignment.sft.train_sft``).

Simplification: the policy is fine-tuned in place from its current weights each iteration (the handout
also discusses restarting from the base model).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from alignment.interop import model_device
from alignment.sampling import sample_completions
from alignment.sft import SFTConfig, train_sft


@dataclass(frozen=True)
class ExpertIterationConfig:
    iterations: int = 5  # sample -> filter -> SFT rounds
    questions_per_iteration: int = 128  # questions sampled per round
    samples_per_question: int = 4  # responses per question
    max_new_tokens: int = 60  # longest sampled response, in tokens
    temperature: float = 1.0  # sampling temperature
    stop: tuple[str, ...] = ("</answer>",)  # responses are cut after the first stop string
    sft_steps: int = 50  # SFT optimizer steps per round
    batch_size: int = 32  # SFT examples per step
    learning_rate: float = 1e-3  # SFT peak learning rate
    seed: int = 0  # question sampling seed


def expert_iteration(
    policy: torch.nn.Module,
    tokenizer: Any,
    questions: Sequence[tuple[str, Any]],
    reward_fn: Callable[[str, Any], dict[str, float]],
    config: ExpertIterationConfig,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
) -> Iterator[dict[str, float]]:
    """Run expert iteration on (prompt, ground_truth) pairs; yields one metrics dict per round."""
    if not questions:
        raise ValueError("expert_iteration needs at least one (prompt, ground_truth) pair")
    rng = random.Random(config.seed)
    generator = torch.Generator(device=model_device(policy)).manual_seed(config.seed)
    for iteration in range(1, config.iterations + 1):
        chosen = rng.sample(list(questions), min(config.questions_per_iteration, len(questions)))
        prompts = [p for p, _ in chosen for _ in range(config.samples_per_question)]
        truths = [t for _, t in chosen for _ in range(config.samples_per_question)]
        responses = sample_completions(
            policy,
            tokenizer,
            prompts,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            stop=config.stop,
            generator=generator,
        )
        rewards = [float(reward_fn(r, t)["reward"]) for r, t in zip(responses, truths)]
        kept = sorted({(p, r) for p, r, w in zip(prompts, responses, rewards) if w > 0.5})
        metrics: dict[str, float] = {
            "iteration": iteration,
            "sample_reward": sum(rewards) / len(rewards),
            "kept_examples": len(kept),
        }
        if kept:
            sft = SFTConfig(
                steps=config.sft_steps,
                batch_size=config.batch_size,
                learning_rate=config.learning_rate,
                min_learning_rate=config.learning_rate / 10,
                warmup_steps=min(5, config.sft_steps),
                eval_every=0,
                seed=config.seed + iteration,
            )
            losses = [step["loss"] for step in train_sft(policy, tokenizer, kept, sft)]
            metrics["sft_loss"] = losses[-1]
        if evaluate is not None:
            policy.eval()
            metrics.update(evaluate(policy))
        yield metrics
