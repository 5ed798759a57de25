"""Supervised fine-tuning stage: train a policy on worked solutions and report held-out accuracy.

The CPU demo (default): a fresh small TransformerLM with a byte tokenizer learns 2-digit addition in the
R1-Zero format ("User: 47+85\\nAssistant: <think>" -> " 7+5=12, 4+8+1=13 </think> <answer>132</answer>").
By default 60% of the training solutions come from a sloppy annotator whose answer line drops the final
carry (" 7+5=12, 4+8+1=13 </think> <answer>32</answer>"; --sloppy-fraction 0 for clean data), so SFT
copies the flaw and the GRPO stage has something a verifier can fix. It prints held-out accuracy (greedy,
95% Wilson interval) before and after, saves the policy for the GRPO / DPO stages and a curve PNG.
Defaults differ from the dataclasses' where the demo needs it: --steps 700, --sloppy-fraction 0.6, and
the model (d_model 96, 2 layers, 4 heads, context 128, vocab 257).

Examples:
    python scripts/sft.py --out runs/sft                       # the CPU demo, about 2 minutes
    python scripts/sft.py --init Qwen/Qwen2.5-Math-1.5B --task gsm8k_train.jsonl \\
        --eval-task gsm8k_test.jsonl --device cuda --learning-rate 1e-5 --batch-size 32 \\
        --gradient-accumulation-steps 8 --max-new-tokens 512 --out runs/sft_qwen
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from alignment.evaluate import make_evaluator
from alignment.policy import load_policy, new_policy, save_policy
from alignment.report import format_table, save_curve
from alignment.rewards import r1_zero_reward_fn
from alignment.sft import SFTConfig, train_sft
from alignment.tasks import TaskConfig, load_task
from basics.cli import add_config_arguments, config_from_arguments, run_main
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
DEMO_SFT = SFTConfig(steps=700, eval_every=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/sft"), help="output directory")
    parser.add_argument(
        "--init", default=None, help="checkpoint file or HF model name/path (default: a fresh model)"
    )
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--max-new-tokens", type=int, default=60, help="longest generated response")
    add_config_arguments(parser, TaskConfig)
    add_config_arguments(parser, SFTConfig)
    add_config_arguments(parser, ModelConfig, prefix="model_")
    args = parser.parse_args()
    task_config = config_from_arguments(TaskConfig, args, base=DEMO_TASK)
    sft_config = config_from_arguments(SFTConfig, args, base=DEMO_SFT)
    torch.set_num_threads(args.threads)

    if args.init is None:
        model_config = config_from_arguments(ModelConfig, args, base=DEMO_MODEL, prefix="model_")
        model, tokenizer = new_policy(model_config, args.device, seed=sft_config.seed)
    else:
        model, tokenizer = load_policy(args.init, args.device)
    data = load_task(task_config)
    evaluate = make_evaluator(
        tokenizer,
        [p.prompt for p in data.heldout],
        [p.answer for p in data.heldout],
        r1_zero_reward_fn,
        max_new_tokens=args.max_new_tokens,
    )
    examples = [(p.prompt, p.solution) for p in data.train]
    print(f"task {task_config.task}: {len(examples)} training examples, {len(data.heldout)} held out")

    start = time.time()
    before = evaluate(model)
    history = [{"step": 0, **before}]
    for metrics in train_sft(model, tokenizer, examples, sft_config, evaluate):
        history.append(metrics)
        if "heldout_accuracy" in metrics or metrics["step"] % 25 == 0:
            shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in metrics.items()}
            print(f"[{time.time() - start:6.0f}s] {shown}", flush=True)
    after = history[-1]

    args.out.mkdir(parents=True, exist_ok=True)
    save_policy(
        model,
        args.out / ("policy.pt" if args.init is None or Path(args.init).is_file() else "policy"),
        tokenizer=tokenizer,
    )
    curve = save_curve(
        history, ["loss", "heldout_accuracy"], args.out / "sft_curve.png", "SFT: loss and held-out accuracy"
    )
    rows = [
        {
            "stage": name,
            "heldout_accuracy": m["heldout_accuracy"],
            "ci_low": m["heldout_ci_low"],
            "ci_high": m["heldout_ci_high"],
            "format_rate": m["heldout_format_rate"],
        }
        for name, m in (("before SFT", before), ("after SFT", after))
    ]
    print(format_table(rows))
    print(f"saved the policy to {args.out}, the curve to {curve} ({time.time() - start:.0f}s)")


if __name__ == "__main__":
    run_main(main)
