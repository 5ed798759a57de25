"""Reward-model stage: fit a Bradley-Terry reward model on preference pairs and report held-out pairwise
accuracy (how often it scores the preferred response higher).

The CPU demo (default): pairs come from the SFT policy. For each training question it samples a few
responses, and the verifier plays the human labeller: a correct response is preferred to an incorrect
one (the worked solution or a corrupted answer fills in when all samples agree). The reward model
starts as a copy of the SFT policy with a scalar head (as in InstructGPT). Held-out pairs are built the
same way from held-out questions. --flaw concise instead trains on labels of a deliberately flawed
annotator who always prefers the shorter answer (a digit dropped): the reward model PPO's
reward-hacking demo optimises against. Your own data: --pairs FILE.jsonl (and --eval-pairs FILE.jsonl),
one {"prompt", "chosen", "rejected"} object per line. Checkpoints go to OUT/checkpoints; --resume
continues an interrupted run. The reward model is saved as OUT/reward_model.pt (a folder for HF models).

Examples:
    python scripts/sft.py --out runs/sft && python scripts/reward_model.py --out runs/rm
    python scripts/reward_model.py --flaw concise --out runs/rm_concise
    python scripts/reward_model.py --init my_hf_sft_model --pairs prefs.jsonl --eval-pairs heldout.jsonl \\
        --device cuda --learning-rate 1e-5 --batch-size 16 --out runs/rm_hf
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from alignment.dpo import sample_preference_pairs
from alignment.policy import load_policy
from alignment.report import add_stage_arguments, format_metrics, format_table, save_curve
from alignment.reward_model import (
    RewardModelConfig,
    pairwise_accuracy,
    read_preference_jsonl,
    save_reward_model,
    scalar_model_from_policy,
    train_reward_model,
)
from alignment.rewards import r1_zero_reward_fn
from alignment.tasks import TaskConfig, concise_annotator_pairs, load_task, wrong_solution
from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    input_file,
    positive_int,
    run_main,
)


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_arguments(parser, out="runs/rm", init="runs/sft/policy.pt")
    parser.add_argument(
        "--pairs",
        type=input_file,
        default=None,
        help="preference JSONL to train on (default: the demo's pairs)",
    )
    parser.add_argument(
        "--eval-pairs", type=input_file, default=None, help="held-out preference JSONL (default: the demo's)"
    )
    parser.add_argument(
        "--flaw", choices=["none", "concise"], default="none", help="deliberately flawed labels"
    )
    parser.add_argument(
        "--train-pairs", type=positive_int, default=1024, help="training questions to build pairs from"
    )
    parser.add_argument(
        "--samples-per-prompt", type=positive_int, default=4, help="policy samples per question"
    )
    parser.add_argument(
        "--pairs-per-prompt",
        type=positive_int,
        default=1,
        help="distinct (correct, wrong) pairs per question",
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=60, help="longest sampled response")
    add_config_arguments(parser, TaskConfig, types={"eval_task": input_file})
    add_config_arguments(parser, RewardModelConfig)
    return parser.parse_args()


def demo_pairs(policy, tokenizer, problems, args, seed: int) -> list[tuple[str, str, str]]:
    """On-policy pairs labelled by the verifier (correct preferred), or the flawed annotator's."""
    if args.flaw == "concise":
        return concise_annotator_pairs(problems)
    rng = random.Random(seed)
    generator = torch.Generator(device=args.device).manual_seed(seed)
    examples = [(p.prompt, p.answer, p.solution, wrong_solution(p, rng)) for p in problems]
    pairs, counts = sample_preference_pairs(
        policy,
        tokenizer,
        examples,
        r1_zero_reward_fn,
        samples_per_prompt=args.samples_per_prompt,
        pairs_per_prompt=args.pairs_per_prompt,
        max_new_tokens=args.max_new_tokens,
        generator=generator,
    )
    print(f"{len(pairs)} pairs from {len(problems)} questions; sides sampled from the policy: {counts}")
    return pairs


def main() -> int:
    args = parse_args()
    task_config = config_from_arguments(TaskConfig, args)
    config = config_from_arguments(RewardModelConfig, args)
    torch.set_num_threads(args.threads)
    policy, tokenizer = load_policy(args.init, args.device, dtype=torch.float32)  # fp32 master weights
    start = time.time()
    if args.pairs is not None:
        train = read_preference_jsonl(args.pairs)
        heldout = (
            read_preference_jsonl(args.eval_pairs) if args.eval_pairs else train[: max(1, len(train) // 10)]
        )
    else:
        data = load_task(task_config)
        train = demo_pairs(policy, tokenizer, data.train[: args.train_pairs], args, config.seed)
        heldout = demo_pairs(policy, tokenizer, data.heldout, args, config.seed + 1)
    model = scalar_model_from_policy(policy)
    del policy

    def evaluate(m):
        return {f"heldout_{k}": v for k, v in pairwise_accuracy(m, tokenizer, heldout).items()}

    def report(metrics: dict) -> None:
        if "heldout_pairwise_accuracy" in metrics or metrics["step"] % 25 == 0:
            print(format_metrics(metrics, time.time() - start), flush=True)

    before = evaluate(model)
    result = train_reward_model(
        model,
        tokenizer,
        train,
        config,
        evaluate=evaluate,
        callback=report,
        checkpoint_dir=args.out / "checkpoints",
        resume=args.resume,
    )
    after = result.evaluation or evaluate(model)
    is_file = Path(args.init).is_file()
    save_reward_model(model, args.out / ("reward_model.pt" if is_file else "reward_model"), tokenizer)
    history = [{"step": 0, **before}, *result.history]
    curve = save_curve(
        history, ["loss", "heldout_pairwise_accuracy"], args.out / "rm_curve.png", "Reward model"
    )
    rows = [{"stage": name, **m} for name, m in (("before training", before), ("after training", after))]
    print(format_table(rows))
    print(f"{len(train)} training pairs, {len(heldout)} held out; saved to {args.out}, curve {curve}")
    print(f"({time.time() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    run_main(main)
