"""RL stage: GRPO (or expert iteration) with the verifiable R1-Zero reward, starting from an SFT policy.

Prints held-out accuracy before and after (greedy, and sampled at the rollout temperature -- the quantity
RL optimises -- each with a 95% Wilson interval), logs reward / format reward /
entropy / clip fraction / response length per rollout batch, and saves the policy and a reward curve PNG.
Checkpoints go to OUT/checkpoints every --checkpoint-every rollout batches (--ei-checkpoint-every rounds);
--resume continues an interrupted run.

Examples:
    python scripts/sft.py --out runs/sft && python scripts/grpo.py --init runs/sft/policy.pt --out runs/grpo
    python scripts/grpo.py --init runs/sft/policy.pt --method expert_iteration --out runs/ei
    python scripts/grpo.py --init runs/sft_qwen/policy --task gsm8k_train.jsonl --eval-task gsm8k_test.jsonl \\
        --device cuda --learning-rate 1e-5 --microbatch-size 8 --max-new-tokens 512 --out runs/grpo_qwen
"""

from __future__ import annotations

import argparse
import time

import torch

from alignment.evaluate import make_rl_evaluator
from alignment.expert_iteration import ExpertIterationConfig, expert_iteration
from alignment.grpo import GRPOConfig, train_grpo
from alignment.policy import load_policy, save_policy
from alignment.report import add_stage_arguments, format_metrics, format_table, policy_path, save_curve
from alignment.rewards import r1_zero_reward_fn
from alignment.tasks import TaskConfig, load_task
from basics.cli import ArgumentParser, add_config_arguments, config_from_arguments, input_file, run_main


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_arguments(parser, out="runs/grpo", init="runs/sft/policy.pt")
    parser.add_argument("--method", choices=["grpo", "expert_iteration"], default="grpo", help="RL algorithm")
    add_config_arguments(parser, TaskConfig, types={"eval_task": input_file})
    add_config_arguments(parser, GRPOConfig)
    add_config_arguments(parser, ExpertIterationConfig, prefix="ei_")
    return parser.parse_args()


def rl_table(before: dict, after: dict, method: str) -> str:
    """Held-out accuracy (greedy and sampled, with intervals) before and after."""
    keys = (
        "accuracy",
        "ci_low",
        "ci_high",
        "sampled_accuracy",
        "sampled_ci_low",
        "sampled_ci_high",
        "format_rate",
    )
    rows = [
        {"stage": name, **{k: m[f"heldout_{k}"] for k in keys}}
        for name, m in ((f"before {method}", before), (f"after {method}", after))
    ]
    return format_table(rows)


def main() -> int:
    args = parse_args()
    task_config = config_from_arguments(TaskConfig, args)
    grpo_config = config_from_arguments(GRPOConfig, args)
    ei_config = config_from_arguments(ExpertIterationConfig, args, prefix="ei_")
    torch.set_num_threads(args.threads)
    model, tokenizer = load_policy(args.init, args.device, dtype=torch.float32)  # fp32 master weights
    data = load_task(task_config)
    evaluate = make_rl_evaluator(
        tokenizer,
        [p.prompt for p in data.heldout],
        [p.answer for p in data.heldout],
        r1_zero_reward_fn,
        max_new_tokens=grpo_config.max_new_tokens,
        temperature=grpo_config.temperature,
    )
    questions = [(p.prompt, p.answer) for p in data.train]
    print(
        f"{args.method} from {args.init}: {len(questions)} training questions, {len(data.heldout)} held out"
    )
    start = time.time()
    before = evaluate(model)
    hooks = dict(
        evaluate=evaluate,
        callback=lambda metrics: print(format_metrics(metrics, time.time() - start), flush=True),
        checkpoint_dir=args.out / "checkpoints",
        resume=args.resume,
    )
    if args.method == "grpo":
        result = train_grpo(model, tokenizer, questions, r1_zero_reward_fn, grpo_config, **hooks)
    else:
        result = expert_iteration(model, tokenizer, questions, r1_zero_reward_fn, ei_config, **hooks)
    after = result.evaluation or evaluate(model)
    save_policy(model, policy_path(args.out, args.init), tokenizer=tokenizer)
    reward = "reward" if args.method == "grpo" else "sample_reward"
    keys = [reward, "heldout_accuracy", "heldout_sampled_accuracy"]
    history = [{"step": 0, **before}, *result.history]
    curve = save_curve(history, keys, args.out / f"{args.method}_reward_curve.png", f"{args.method}: reward")
    print(rl_table(before, after, args.method))
    print(f"saved the policy to {args.out}, the curve to {curve} ({time.time() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    run_main(main)
