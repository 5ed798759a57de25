"""Preference stage: DPO on (correct, incorrect) response pairs sampled from the SFT policy.

Pairs are on-policy: several responses are sampled per question and a correct one (chosen) is paired with an
incorrect one (rejected); the worked solution or a corrupted answer fills in when all samples agree. The
script prints, before and after DPO, the held-out *preference accuracy* (how often the policy gives the
chosen response a higher log-probability) and the held-out greedy accuracy, logs the implicit-reward
accuracy and margin, and saves the policy and a curve PNG. Reference log-probs are computed once.
Checkpoints go to OUT/checkpoints every --checkpoint-every steps; --resume continues an interrupted run.

Examples:
    python scripts/sft.py --out runs/sft && python scripts/dpo.py --init runs/sft/policy.pt --out runs/dpo
    python scripts/dpo.py --init runs/sft_qwen/policy --task gsm8k_train.jsonl --eval-task gsm8k_test.jsonl \\
        --device cuda --learning-rate 1e-6 --max-new-tokens 512 --out runs/dpo_qwen
"""

from __future__ import annotations

import argparse
import copy
import random
import time

import torch

from alignment.dpo import PLAIN_TEMPLATE, DPOConfig, preference_metrics, sample_preference_pairs, train_dpo
from alignment.evaluate import make_evaluator
from alignment.policy import load_policy, save_policy
from alignment.report import add_stage_arguments, format_metrics, format_table, policy_path, save_curve
from alignment.rewards import r1_zero_reward_fn
from alignment.sft import ALPACA_TEMPLATE
from alignment.tasks import TaskConfig, load_task, wrong_solution
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
    add_stage_arguments(parser, out="runs/dpo", init="runs/sft/policy.pt")
    parser.add_argument(
        "--train-pairs", type=positive_int, default=512, help="training questions to build pairs from"
    )
    parser.add_argument(
        "--samples-per-prompt", type=positive_int, default=4, help="policy samples per question"
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=60, help="longest sampled response")
    add_config_arguments(parser, TaskConfig, types={"eval_task": input_file})
    add_config_arguments(parser, DPOConfig)
    return parser.parse_args()


def build_pairs(policy, tokenizer, data, args, seed: int):
    """On-policy (prompt, chosen, rejected) triples for training and held-out questions."""
    rng = random.Random(seed)
    generator = torch.Generator(device=args.device).manual_seed(seed)

    def examples(problems):
        return [(p.prompt, p.answer, p.solution, wrong_solution(p, rng)) for p in problems]

    sample = dict(
        samples_per_prompt=args.samples_per_prompt, max_new_tokens=args.max_new_tokens, generator=generator
    )
    train, train_counts = sample_preference_pairs(
        policy, tokenizer, examples(data.train[: args.train_pairs]), r1_zero_reward_fn, **sample
    )
    heldout, heldout_counts = sample_preference_pairs(
        policy, tokenizer, examples(data.heldout), r1_zero_reward_fn, **sample
    )
    print(f"{len(train)} training pairs {train_counts}, {len(heldout)} held-out pairs {heldout_counts}")
    return train, heldout


def main() -> int:
    args = parse_args()
    task_config = config_from_arguments(TaskConfig, args)
    dpo_config = config_from_arguments(DPOConfig, args)
    torch.set_num_threads(args.threads)
    policy, tokenizer = load_policy(args.init, args.device, dtype=torch.float32)  # fp32 master weights
    reference = copy.deepcopy(policy).eval()
    data = load_task(task_config)
    start = time.time()
    train_pairs, heldout_pairs = build_pairs(policy, tokenizer, data, args, dpo_config.seed)
    heldout = ([p.prompt for p in data.heldout], [p.answer for p in data.heldout])
    accuracy = make_evaluator(tokenizer, *heldout, r1_zero_reward_fn, max_new_tokens=args.max_new_tokens)
    template = ALPACA_TEMPLATE if dpo_config.alpaca_template else PLAIN_TEMPLATE

    def evaluate(model):
        prefs = preference_metrics(model, tokenizer, heldout_pairs, template)
        return {f"heldout_{k}": v for k, v in prefs.items()} | accuracy(model)

    def report(metrics: dict) -> None:
        if "heldout_preference_accuracy" in metrics or metrics["step"] % 10 == 0:
            print(format_metrics(metrics, time.time() - start), flush=True)

    before = evaluate(policy)
    result = train_dpo(
        policy,
        reference,
        tokenizer,
        train_pairs,
        dpo_config,
        evaluate=evaluate,
        callback=report,
        checkpoint_dir=args.out / "checkpoints",
        resume=args.resume,
    )
    after = result.evaluation or evaluate(policy)
    save_policy(policy, policy_path(args.out, args.init), tokenizer=tokenizer)
    curve = save_curve(
        [{"step": 0, **before}, *result.history],
        ["loss", "reward_accuracy", "heldout_preference_accuracy"],
        args.out / "dpo_curve.png",
        "DPO: loss, implicit-reward accuracy, held-out preference accuracy",
    )
    print(summary_table(before, after, result.metrics))
    print(f"saved the policy to {args.out}, the curve to {curve} ({time.time() - start:.0f}s)")
    return 0


def summary_table(before: dict, after: dict, last: dict) -> str:
    keys = ("preference_accuracy", "log_prob_gap", "accuracy", "ci_low", "ci_high")
    rows = [
        {"stage": name, **{k: m[f"heldout_{k}"] for k in keys}}
        for name, m in (("before DPO", before), ("after DPO", after))
    ]
    nan = float("nan")
    margin = f"implicit-reward accuracy {last.get('reward_accuracy', nan):.3f}, margin {last.get('reward_margin', nan):.3f}"
    return format_table(rows) + "\n" + margin


if __name__ == "__main__":
    run_main(main)
