"""Supervised fine-tuning stage: train a policy on worked solutions and report held-out accuracy.

The CPU demo (default): a fresh small TransformerLM with a byte tokenizer learns 2-digit addition in the
R1-Zero format ("User: 47+85\\nAssistant: <think>" -> " 7+5=12, 4+8+1=13 </think> <answer>132</answer>").
By default 60% of the training solutions come from a sloppy annotator whose answer line drops the final
carry (" 7+5=12, 4+8+1=13 </think> <answer>32</answer>"; --sloppy-fraction 0 for clean data), so SFT
copies the flaw and the GRPO stage has something a verifier can fix. It prints held-out accuracy (greedy,
95% Wilson interval) before and after, saves the policy for the GRPO / DPO stages and a curve PNG.
Checkpoints go to OUT/checkpoints every --checkpoint-every steps; --resume continues an interrupted run.
Defaults differ from the dataclasses' where the demo needs it: --sloppy-fraction 0.6, and without --init
--steps 700 --min-learning-rate 3e-4 and the model (d_model 96, 2 layers, 4 heads, context 128, vocab 257).

Examples:
    python scripts/sft.py --out runs/sft                       # the CPU demo, about 2 minutes
    python scripts/sft.py --out runs/sft --resume              # continue it after an interruption
    python scripts/sft.py --init Qwen/Qwen2.5-Math-1.5B --task gsm8k_train.jsonl \\
        --eval-task gsm8k_test.jsonl --device cuda --learning-rate 1e-5 --batch-size 32 \\
        --gradient-accumulation-steps 8 --max-new-tokens 512 --out runs/sft_qwen
"""

from __future__ import annotations

import argparse
import time

import torch

from alignment.evaluate import make_evaluator
from alignment.policy import load_policy, new_policy, save_policy
from alignment.report import add_stage_arguments, format_metrics, format_table, policy_path, save_curve
from alignment.rewards import r1_zero_reward_fn
from alignment.sft import SFTConfig, train_sft
from alignment.tasks import TaskConfig, load_task
from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    input_file,
    positive_int,
    run_main,
)
from basics.model import ModelConfig

# The CPU demo: a 270K-parameter model; SFT data from a "sloppy annotator" who drops the final carry from
# 60% of the answer lines (the reasoning stays right), a flaw the GRPO stage's verifier reward can fix.
DEMO_MODEL = ModelConfig(
    vocab_size=257,
    context_length=128,
    d_model=96,
    num_layers=2,
    num_heads=4,
    norm_impl="torch",
    attention_impl="sdpa",
    rope_impl="complex",
)
DEMO_TASK = TaskConfig(sloppy_fraction=0.6)
DEMO_SFT = SFTConfig(steps=700, eval_every=100, min_learning_rate=3e-4)


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_arguments(parser, out="runs/sft", init=None)
    parser.add_argument("--max-new-tokens", type=positive_int, default=60, help="longest generated response")
    add_config_arguments(parser, TaskConfig, types={"eval_task": input_file})
    add_config_arguments(parser, SFTConfig)
    add_config_arguments(parser, ModelConfig, prefix="model_")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    task_config = config_from_arguments(TaskConfig, args, base=DEMO_TASK)
    # the demo's schedule for the fresh demo model; the dataclass's defaults for a given --init
    sft_config = config_from_arguments(SFTConfig, args, base=DEMO_SFT if args.init is None else None)
    model_config = config_from_arguments(ModelConfig, args, base=DEMO_MODEL, prefix="model_")
    torch.set_num_threads(args.threads)
    if args.init is None:
        model, tokenizer = new_policy(model_config, args.device, seed=sft_config.seed)
    else:  # fp32 master weights: an HF model trains under bf16 autocast on CUDA, not in pure bf16
        model, tokenizer = load_policy(args.init, args.device, dtype=torch.float32)
    data = load_task(task_config)
    heldout = ([p.prompt for p in data.heldout], [p.answer for p in data.heldout])
    evaluate = make_evaluator(tokenizer, *heldout, r1_zero_reward_fn, max_new_tokens=args.max_new_tokens)
    examples = [(p.prompt, p.solution) for p in data.train]
    print(f"task {task_config.task}: {len(examples)} training examples, {len(data.heldout)} held out")

    start = time.time()
    before = evaluate(model)

    def report(metrics: dict) -> None:
        if "heldout_accuracy" in metrics or metrics["step"] % 25 == 0:
            print(format_metrics(metrics, time.time() - start), flush=True)

    result = train_sft(
        model,
        tokenizer,
        examples,
        sft_config,
        evaluate=evaluate,
        callback=report,
        checkpoint_dir=args.out / "checkpoints",
        resume=args.resume,
    )
    after = result.evaluation or evaluate(model)
    save_policy(model, policy_path(args.out, args.init), tokenizer=tokenizer)
    history = [{"step": 0, **before}, *result.history]
    curve = save_curve(
        history, ["loss", "heldout_accuracy"], args.out / "sft_curve.png", "SFT: loss and held-out accuracy"
    )
    keys = {"heldout_accuracy": "heldout_accuracy", "ci_low": "heldout_ci_low", "ci_high": "heldout_ci_high"}
    keys["format_rate"] = "heldout_format_rate"
    rows = [
        {"stage": name, **{k: m[v] for k, v in keys.items()}}
        for name, m in (("before SFT", before), ("after SFT", after))
    ]
    print(format_table(rows))
    print(f"saved the policy to {args.out}, the curve to {curve} ({time.time() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    run_main(main)
