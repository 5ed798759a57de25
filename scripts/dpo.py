"""Preference stage: DPO on (correct, incorrect) response pairs sampled from the SFT policy.

Pairs are on-policy: several responses are sampled per question and a correct one (chosen) is paired with an
incorrect one (rejected); the worked solution or a corrupted answer fills in when all samples agree. The
script prints, before and after DPO, the held-out *preference accuracy* (how often the policy gives the
chosen response a higher log-probability) and the held-out greedy accuracy, logs the implicit-reward
accuracy and margin, and saves the policy and a curve PNG. Reference log-probs are computed once.

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
from pathlib import Path

import torch

from alignment.dpo import PLAIN_TEMPLATE, DPOConfig, preference_metrics, sample_preference_pairs, train_dpo
from alignment.evaluate import make_evaluator
from alignment.policy import load_policy, save_policy
from alignment.report import format_table, save_curve
from alignment.rewards import r1_zero_reward_fn
from alignment.sft import ALPACA_TEMPLATE
from alignment.tasks import TaskConfig, load_task, wrong_solution
from basics.cli import add_config_arguments, config_from_arguments, run_main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--init", default="runs/sft/policy.pt", help="checkpoint file or HF model name/path")
    parser.add_argument("--out", type=Path, default=Path("runs/dpo"), help="output directory")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--train-pairs", type=int, default=512, help="training questions to build pairs from")
    parser.add_argument("--samples-per-prompt", type=int, default=4, help="policy samples per question")
    parser.add_argument("--max-new-tokens", type=int, default=60, help="longest sampled response")
    add_config_arguments(parser, TaskConfig)
    add_config_arguments(parser, DPOConfig)
    args = parser.parse_args()
    task_config = config_from_arguments(TaskConfig, args)
    dpo_config = config_from_arguments(DPOConfig, args)
    torch.set_num_threads(args.threads)

    policy, tokenizer = load_policy(args.init, args.device)
    reference = copy.deepcopy(policy).eval()
    data = load_task(task_config)
    rng = random.Random(dpo_config.seed)
    generator = torch.Generator(device=args.device).manual_seed(dpo_config.seed)

    def examples(problems):
        return [(p.prompt, p.answer, p.solution, wrong_solution(p, rng)) for p in problems]

    start = time.time()
    sample = dict(
        samples_per_prompt=args.samples_per_prompt, max_new_tokens=args.max_new_tokens, generator=generator
    )
    train_pairs, train_counts = sample_preference_pairs(
        policy, tokenizer, examples(data.train[: args.train_pairs]), r1_zero_reward_fn, **sample
    )
    heldout_pairs, heldout_counts = sample_preference_pairs(
        policy, tokenizer, examples(data.heldout), r1_zero_reward_fn, **sample
    )
    print(
        f"{len(train_pairs)} training pairs {train_counts}, {len(heldout_pairs)} held-out pairs {heldout_counts}"
    )
    accuracy = make_evaluator(
        tokenizer,
        [p.prompt for p in data.heldout],
        [p.answer for p in data.heldout],
        r1_zero_reward_fn,
        max_new_tokens=args.max_new_tokens,
    )
    template = ALPACA_TEMPLATE if dpo_config.alpaca_template else PLAIN_TEMPLATE

    def evaluate(model):
        prefs = preference_metrics(model, tokenizer, heldout_pairs, template)
        return {f"heldout_{k}": v for k, v in prefs.items()} | accuracy(model)

    before = evaluate(policy)
    history = [{"step": 0, **before}]
    for metrics in train_dpo(policy, reference, tokenizer, train_pairs, dpo_config, evaluate):
        history.append(metrics)
        if "heldout_preference_accuracy" in metrics or metrics["step"] % 10 == 0:
            shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in metrics.items()}
            print(f"[{time.time() - start:6.0f}s] {shown}", flush=True)
    after = history[-1]

    args.out.mkdir(parents=True, exist_ok=True)
    save_policy(
        policy, args.out / ("policy.pt" if Path(args.init).is_file() else "policy"), tokenizer=tokenizer
    )
    curve = save_curve(
        history,
        ["loss", "reward_accuracy", "heldout_preference_accuracy"],
        args.out / "dpo_curve.png",
        "DPO: loss, implicit-reward accuracy, held-out preference accuracy",
    )
    rows = [
        {
            "stage": name,
            "heldout_preference_accuracy": m["heldout_preference_accuracy"],
            "heldout_log_prob_gap": m["heldout_log_prob_gap"],
            "heldout_accuracy": m["heldout_accuracy"],
            "ci_low": m["heldout_ci_low"],
            "ci_high": m["heldout_ci_high"],
        }
        for name, m in (("before DPO", before), ("after DPO", after))
    ]
    print(format_table(rows))
    print(
        f"implicit-reward accuracy {after.get('reward_accuracy', float('nan')):.3f}, margin {after.get('reward_margin', float('nan')):.3f}"
    )
    print(f"saved the policy to {args.out}, the curve to {curve} ({time.time() - start:.0f}s)")


if __name__ == "__main__":
    run_main(main)
