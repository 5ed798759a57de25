"""RL stage: GRPO (or expert iteration) with the verifiable R1-Zero reward, starting from an SFT policy.

Prints held-out accuracy before and after (greedy, and sampled at the rollout temperature -- the quantity
RL optimises -- each with a 95% Wilson interval), logs reward / format reward /
entropy / clip fraction / response length per rollout batch, and saves the policy and a reward curve PNG.

Examples:
    python scripts/sft.py --out runs/sft && python scripts/grpo.py --init runs/sft/policy.pt --out runs/grpo
    python scripts/grpo.py --init runs/sft/policy.pt --method expert_iteration --out runs/ei
    python scripts/grpo.py --init runs/sft_qwen/policy --task gsm8k_train.jsonl --eval-task gsm8k_test.jsonl \\
        --device cuda --learning-rate 1e-5 --microbatch-size 8 --max-new-tokens 512 --out runs/grpo_qwen
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from alignment.evaluate import make_evaluator
from alignment.expert_iteration import ExpertIterationConfig, expert_iteration
from alignment.grpo import GRPOConfig, train_grpo
from alignment.policy import load_policy, save_policy
from alignment.report import format_table, save_curve
from alignment.rewards import r1_zero_reward_fn
from alignment.tasks import TaskConfig, load_task
from basics.cli import add_config_arguments, config_from_arguments, run_main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--init", default="runs/sft/policy.pt", help="checkpoint file or HF model name/path")
    parser.add_argument("--out", type=Path, default=Path("runs/grpo"), help="output directory")
    parser.add_argument("--method", choices=["grpo", "expert_iteration"], default="grpo", help="RL algorithm")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_config_arguments(parser, TaskConfig)
    add_config_arguments(parser, GRPOConfig)
    add_config_arguments(parser, ExpertIterationConfig, prefix="ei_")
    args = parser.parse_args()
    task_config = config_from_arguments(TaskConfig, args)
    grpo_config = config_from_arguments(GRPOConfig, args)
    ei_config = config_from_arguments(ExpertIterationConfig, args, prefix="ei_")
    torch.set_num_threads(args.threads)

    model, tokenizer = load_policy(args.init, args.device)
    data = load_task(task_config)
    prompts, truths = [p.prompt for p in data.heldout], [p.answer for p in data.heldout]
    greedy = make_evaluator(
        tokenizer, prompts, truths, r1_zero_reward_fn, max_new_tokens=grpo_config.max_new_tokens
    )
    sampled = make_evaluator(
        tokenizer,
        prompts,
        truths,
        r1_zero_reward_fn,
        max_new_tokens=grpo_config.max_new_tokens,
        prefix="heldout_sampled_",
        temperature=grpo_config.temperature,
        seed=12345,
    )

    def evaluate(model):  # greedy accuracy, and accuracy at the rollout temperature (what RL optimises)
        return greedy(model) | sampled(model)

    questions = [(p.prompt, p.answer) for p in data.train]
    print(
        f"{args.method} from {args.init}: {len(questions)} training questions, {len(data.heldout)} held out"
    )

    start = time.time()
    before = evaluate(model)
    history = [{"step": 0, **before}]
    if args.method == "grpo":
        steps = train_grpo(model, tokenizer, questions, r1_zero_reward_fn, grpo_config, evaluate)
        keys = ["reward", "heldout_accuracy", "heldout_sampled_accuracy"]
    else:
        steps = expert_iteration(model, tokenizer, questions, r1_zero_reward_fn, ei_config, evaluate)
        keys = ["sample_reward", "heldout_accuracy", "heldout_sampled_accuracy"]
    for metrics in steps:
        metrics.setdefault("step", metrics.get("iteration", len(history)))
        history.append(metrics)
        shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in metrics.items()}
        print(f"[{time.time() - start:6.0f}s] {shown}", flush=True)
    after = {**history[-1], **evaluate(model)} if "heldout_accuracy" not in history[-1] else history[-1]

    args.out.mkdir(parents=True, exist_ok=True)
    save_policy(
        model, args.out / ("policy.pt" if Path(args.init).is_file() else "policy"), tokenizer=tokenizer
    )
    curve = save_curve(history, keys, args.out / f"{args.method}_reward_curve.png", f"{args.method}: reward")
    rows = [
        {
            "stage": name,
            "heldout_accuracy": m["heldout_accuracy"],
            "ci_low": m["heldout_ci_low"],
            "ci_high": m["heldout_ci_high"],
            "sampled_accuracy": m["heldout_sampled_accuracy"],
            "sampled_ci_low": m["heldout_sampled_ci_low"],
            "sampled_ci_high": m["heldout_sampled_ci_high"],
            "format_rate": m["heldout_format_rate"],
        }
        for name, m in ((f"before {args.method}", before), (f"after {args.method}", after))
    ]
    print(format_table(rows))
    print(f"saved the policy to {args.out}, the curve to {curve} ({time.time() - start:.0f}s)")


if __name__ == "__main__":
    run_main(main)
