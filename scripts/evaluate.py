"""Evaluate a policy: greedy generation, grading, accuracy with a 95% Wilson interval, generations to JSONL.

Data: the generated addition task (default), a GSM8K-format JSONL (question / answer "#### N"; graded with
the R1-Zero reward, or with the last number in the response via --grader gsm8k), or an MMLU-format CSV
(question,A,B,C,D,answer; graded by "The correct answer is X").

Examples:
    python scripts/evaluate.py --policy runs/grpo/policy.pt                      # held-out addition problems
    python scripts/evaluate.py --policy runs/sft/policy.pt --digits 3 --eval-size 500
    python scripts/evaluate.py --policy Qwen/Qwen2.5-Math-1.5B --gsm8k gsm8k_test.jsonl --device cuda \\
        --max-new-tokens 1024 --limit 500 --output runs/eval/qwen_gsm8k.jsonl
    python scripts/evaluate.py --policy my_hf_model_dir --mmlu mmlu/high_school_math_test.csv --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from alignment.evaluate import (
    evaluate_model,
    gsm8k_prompt,
    load_gsm8k,
    load_mmlu,
    mmlu_prompt,
    mmlu_reward_fn,
)
from alignment.policy import load_policy
from alignment.report import format_table
from alignment.rewards import gsm8k_reward_fn, r1_zero_reward_fn
from alignment.tasks import TaskConfig, load_task
from basics.cli import add_config_arguments, config_from_arguments, run_main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy", required=True, help="checkpoint file or HF model name/path")
    parser.add_argument("--gsm8k", default=None, help="GSM8K-format JSONL to evaluate on")
    parser.add_argument("--mmlu", default=None, help="MMLU-format CSV to evaluate on")
    parser.add_argument("--grader", choices=["r1_zero", "gsm8k"], default="r1_zero", help="GSM8K grading")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N examples only")
    parser.add_argument(
        "--output", type=Path, default=None, help="JSONL of generations (default: next to --policy)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=60, help="longest generated response")
    parser.add_argument("--batch-size", type=int, default=128, help="prompts per generation batch")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_config_arguments(parser, TaskConfig)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = load_policy(args.policy, args.device)
    if args.mmlu:
        examples = load_mmlu(args.mmlu)[: args.limit]
        prompts, truths, reward_fn, name = (
            [mmlu_prompt(e) for e in examples],
            [e["answer"] for e in examples],
            mmlu_reward_fn,
            "mmlu",
        )
    elif args.gsm8k:
        examples = load_gsm8k(args.gsm8k)[: args.limit]
        prompts, truths, name = (
            [gsm8k_prompt(e["question"]) for e in examples],
            [e["answer"] for e in examples],
            "gsm8k",
        )
        reward_fn = r1_zero_reward_fn if args.grader == "r1_zero" else gsm8k_reward_fn
    else:
        problems = load_task(config_from_arguments(TaskConfig, args)).heldout[: args.limit]
        prompts, truths, reward_fn, name = (
            [p.prompt for p in problems],
            [p.answer for p in problems],
            r1_zero_reward_fn,
            "addition",
        )
    output = args.output or Path(args.policy).with_name(f"eval_{name}.jsonl")
    start = time.time()
    result = evaluate_model(
        model,
        tokenizer,
        prompts,
        truths,
        reward_fn,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        output_path=output,
    )
    print(format_table([{"data": name, **result.to_dict()}]))
    print(f"generations written to {output} ({time.time() - start:.0f}s)")


if __name__ == "__main__":
    run_main(main)
