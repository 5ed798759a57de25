"""Evaluate a model: generation tasks (accuracy with a 95% Wilson interval, generations to JSONL),
multiple-choice benchmarks scored by log-likelihood (acc, acc_norm), or the perplexity of a text file.

Generation (greedy): the generated addition task (default); a GSM8K-format JSONL (question / answer
"#### N"; graded with the R1-Zero reward, or with the last number in the response via --grader gsm8k); or
an MMLU-format CSV (question,A,B,C,D,answer; graded by "The correct answer is X").
Multiple choice: --multiple-choice FILE.jsonl in the Hugging Face HellaSwag (ctx/endings/label), ARC
(question/choices/answerKey) or MMLU (question/choices/answer) format; the lm-evaluation-harness's
scoring (scripts/lm_eval_harness.py runs the harness itself).
Perplexity: --perplexity FILE with a sliding window (--window tokens, advancing by --stride).
The model (--policy) is anything the library writes: an alignment policy file, a pretraining run
directory of scripts/train.py, or a Hugging Face folder or hub name.

Examples:
    python scripts/evaluate.py --policy runs/grpo/policy.pt                      # held-out addition problems
    python scripts/evaluate.py --policy runs/sft/policy.pt --digits 3 --eval-size 500
    python scripts/evaluate.py --policy runs/cpu --multiple-choice arc_easy_test.jsonl
    python scripts/evaluate.py --policy runs/cpu --perplexity notes.txt --window 128 --stride 64
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
from alignment.likelihood import evaluate_multiple_choice, load_multiple_choice, perplexity
from alignment.policy import load_any
from alignment.report import format_table
from alignment.rewards import gsm8k_reward_fn, r1_zero_reward_fn
from alignment.tasks import TaskConfig, load_task
from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    device_name,
    input_file,
    output_file,
    positive_int,
    run_main,
)


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", required=True, help="policy file, run directory, or HF model name/path")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--gsm8k", type=input_file, default=None, help="GSM8K-format JSONL to evaluate on")
    what.add_argument(
        "--mmlu", type=input_file, default=None, help="MMLU-format CSV to evaluate on (generation)"
    )
    what.add_argument(
        "--multiple-choice",
        type=input_file,
        default=None,
        help="HellaSwag/ARC/MMLU-format JSONL (log-likelihood)",
    )
    what.add_argument(
        "--perplexity", type=input_file, default=None, help="text file whose perplexity to compute"
    )
    parser.add_argument(
        "--format", choices=["auto", "hellaswag", "arc", "mmlu"], default="auto", help="JSONL format"
    )
    parser.add_argument(
        "--window", type=positive_int, default=None, help="perplexity window (default: the model's)"
    )
    parser.add_argument(
        "--stride", type=positive_int, default=None, help="perplexity stride (default: the window)"
    )
    parser.add_argument("--grader", choices=["r1_zero", "gsm8k"], default="r1_zero", help="GSM8K grading")
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluate the first N examples only")
    parser.add_argument(
        "--output", type=output_file, default=None, help="JSONL of generations (default: next to --policy)"
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=60, help="longest generated response")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="prompts per generation batch")
    parser.add_argument("--device", type=device_name, default="cpu", help="torch device")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    add_config_arguments(parser, TaskConfig, types={"eval_task": input_file})
    return parser.parse_args()


def generation_task(args: argparse.Namespace, task_config: TaskConfig):
    """(name, prompts, ground truths, reward function) of the chosen generation task."""
    if args.mmlu:
        examples = load_mmlu(args.mmlu)[: args.limit]
        return "mmlu", [mmlu_prompt(e) for e in examples], [e["answer"] for e in examples], mmlu_reward_fn
    if args.gsm8k:
        examples = load_gsm8k(args.gsm8k)[: args.limit]
        reward_fn = r1_zero_reward_fn if args.grader == "r1_zero" else gsm8k_reward_fn
        return (
            "gsm8k",
            [gsm8k_prompt(e["question"]) for e in examples],
            [e["answer"] for e in examples],
            reward_fn,
        )
    problems = load_task(task_config).heldout[: args.limit]
    return "addition", [p.prompt for p in problems], [p.answer for p in problems], r1_zero_reward_fn


def main() -> int:
    args = parse_args()
    task_config = config_from_arguments(TaskConfig, args)  # checked before the model loads
    torch.set_num_threads(args.threads)
    model, tokenizer = load_any(args.policy, args.device)
    start = time.time()
    if args.multiple_choice:
        items = load_multiple_choice(args.multiple_choice, args.format)[: args.limit]
        result = evaluate_multiple_choice(model, tokenizer, items)
        row = {"data": Path(args.multiple_choice).name, "n": result.n, "acc": result.acc}
        row |= {
            "acc_ci_low": result.acc_ci_low,
            "acc_ci_high": result.acc_ci_high,
            "acc_norm": result.acc_norm,
        }
        print(format_table([row]))
    elif args.perplexity:
        text = Path(args.perplexity).read_text(encoding="utf-8")
        result = perplexity(model, tokenizer, text, args.window, args.stride)
        print(format_table([{"data": Path(args.perplexity).name, **vars(result)}]))
    else:
        name, prompts, truths, reward_fn = generation_task(args, task_config)
        output = args.output or Path(args.policy).with_name(f"eval_{name}.jsonl")
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
        print(f"generations written to {output}")
    print(f"({time.time() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    run_main(main)
