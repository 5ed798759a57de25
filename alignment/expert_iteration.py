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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignment.interop import model_device
from alignment.loop import Callback, Evaluate, StageLoop, StageResult, TrainingDiverged, check_config
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
    eval_every: int = 1  # rounds between evaluation callbacks (0: never)
    checkpoint_every: int = 1  # rounds between resumable checkpoints (0: only at the end)
    seed: int = 0  # question sampling seed

    def __post_init__(self) -> None:
        check_config(
            self,
            positive=("iterations", "questions_per_iteration", "samples_per_question", "max_new_tokens"),
            non_negative=("temperature", "eval_every", "checkpoint_every"),
        )
        check_config(self, positive=("sft_steps", "batch_size", "learning_rate"))


def filter_correct(
    prompts: Sequence[str], responses: Sequence[str], rewards: Sequence[float]
) -> list[tuple[str, str]]:
    """The (prompt, response) pairs the verifier accepted (reward > 0.5), duplicates removed, sorted."""
    # A set: the same correct answer sampled twice would otherwise count double in the SFT data.
    # Sorted, so the SFT data (and its shuffle) does not depend on sampling order.
    return sorted({(p, r) for p, r, w in zip(prompts, responses, rewards) if w > 0.5})


def expert_iteration(
    policy: torch.nn.Module,
    tokenizer: Any,
    questions: Sequence[tuple[str, Any]],
    reward_fn: Callable[[str, Any], dict[str, float]],
    config: ExpertIterationConfig,
    *,
    evaluate: Evaluate | None = None,
    callback: Callback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> StageResult:
    """Run expert iteration on (prompt, ground_truth) pairs; ``callback(metrics)`` after every round."""
    if not questions:
        raise ValueError("expert_iteration needs at least one (prompt, ground_truth) pair")
    rng = random.Random(config.seed)
    generator = torch.Generator(device=model_device(policy)).manual_seed(config.seed)
    rngs = {"questions": rng, "sampling": generator}
    # no optimizer of its own: each round's SFT starts a fresh AdamW
    loop = StageLoop(
        "expert_iteration",
        policy,
        None,
        config,
        evaluate=evaluate,
        callback=callback,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        rngs=rngs,
    )
    for iteration in loop.steps(config.iterations):
        # Sample -> verify -> keep the correct ones -> SFT on them: the policy imitates its own successes.
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
        kept = filter_correct(prompts, responses, rewards)
        metrics = {"sample_reward": sum(rewards) / len(rewards), "kept_examples": len(kept)}
        if kept:  # a round where nothing was right leaves the policy unchanged
            metrics["sft_loss"] = _sft_round(policy, tokenizer, kept, config, iteration, loop)
        loop.end_step(metrics)
    return loop.result()


def _sft_round(
    policy: Any,
    tokenizer: Any,
    kept: list[tuple[str, str]],
    config: ExpertIterationConfig,
    iteration: int,
    loop: StageLoop,
) -> float:
    sft = SFTConfig(
        steps=config.sft_steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        min_learning_rate=config.learning_rate / 10,
        warmup_steps=min(5, config.sft_steps),
        eval_every=0,
        checkpoint_every=0,
        seed=config.seed + iteration,  # a different batch order each round, reproducible
    )
    try:
        result = train_sft(policy, tokenizer, kept, sft)
    except TrainingDiverged as error:
        # the inner SFT wrote no checkpoint of its own: name the round's instead of its "no checkpoint"
        what = str(error).rsplit("; ", 1)[0]
        raise TrainingDiverged(f"expert iteration round {iteration}: {what}; {loop.last_good()}") from None
    return result.metrics["loss"]
