"""PPO stage (RLHF): optimise the SFT policy against a reward model (or the verifier) with a value
function, GAE and a per-token KL penalty to the frozen SFT policy.

Prints held-out accuracy before and after (greedy, and sampled at the rollout temperature, each with a
95% Wilson interval), and logs per rollout batch the reward model's score, the rollouts' true
(verifier) reward, the KL to the reference, clip fractions, value loss and explained variance. Saves the
policy, the value model and a curve PNG. Checkpoints go to OUT/checkpoints every --checkpoint-every
rollout batches; --resume continues an interrupted run. The demo's default --kl-coef is 0.5 (the
dataclass's, 0.05, suits large models).

Reward hacking: train the flawed reward model (scripts/reward_model.py --flaw concise) and optimise
against it with and without the KL penalty: its score rises while the true accuracy falls (to 0 at
--kl-coef 0), more slowly and less far with a larger --kl-coef.

Examples:
    python scripts/reward_model.py --out runs/rm && python scripts/ppo.py --reward-model runs/rm/reward_model.pt
    python scripts/ppo.py --reward verifier --out runs/ppo_verifier        # PPO on the verifiable reward
    python scripts/reward_model.py --flaw concise --out runs/rm_concise
    python scripts/ppo.py --reward-model runs/rm_concise/reward_model.pt --kl-coef 0 --out runs/ppo_hack
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from alignment.evaluate import make_rl_evaluator
from alignment.policy import load_policy, save_policy
from alignment.ppo import PPOConfig, reward_model_scorer, train_ppo, verifier_scorer
from alignment.report import add_stage_arguments, format_metrics, format_table, policy_path, save_curve
from alignment.reward_model import load_reward_model, save_reward_model, scalar_model_from_policy
from alignment.rewards import r1_zero_reward_fn
from alignment.tasks import TaskConfig, load_task
from basics.cli import ArgumentParser, add_config_arguments, config_from_arguments, input_file, run_main

# The CPU demo: a strong KL penalty (beta 0.5 per token) keeps the policy near the SFT policy, where the
# small reward model is still mostly right (the README's reward-hacking table shows beta 0, 0.5 and 2
# against a deliberately flawed reward model).
DEMO_PPO = PPOConfig(kl_coef=0.5)


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stage_arguments(parser, out="runs/ppo", init="runs/sft/policy.pt")
    parser.add_argument(
        "--reward", choices=["reward_model", "verifier"], default="reward_model", help="score source"
    )
    parser.add_argument(
        "--reward-model", default="runs/rm/reward_model.pt", help="reward model file or folder"
    )
    add_config_arguments(parser, TaskConfig, types={"eval_task": input_file})
    add_config_arguments(parser, PPOConfig)
    return parser.parse_args()


def build_scorer(args, tokenizer):
    if args.reward == "verifier":
        return verifier_scorer(r1_zero_reward_fn)
    reward_model, rm_tokenizer = load_reward_model(args.reward_model, args.device)
    if type(rm_tokenizer) is not type(tokenizer):
        raise ValueError(f"{args.reward_model} uses a different tokenizer than the policy {args.init}")
    return reward_model_scorer(reward_model, tokenizer, verifier=r1_zero_reward_fn)


def rl_table(before: dict, after: dict) -> str:
    keys = ("accuracy", "ci_low", "ci_high", "sampled_accuracy", "sampled_ci_low", "sampled_ci_high")
    rows = [
        {"stage": name, **{k: m[f"heldout_{k}"] for k in keys}}
        for name, m in (("before PPO", before), ("after PPO", after))
    ]
    return format_table(rows)


def main() -> int:
    args = parse_args()
    task_config = config_from_arguments(TaskConfig, args)
    config = config_from_arguments(PPOConfig, args, base=DEMO_PPO)
    if (
        args.reward == "reward_model" and not Path(args.reward_model).exists()
    ):  # checked before the policy loads
        raise FileNotFoundError(f"--reward-model: no such file or folder: {args.reward_model}")
    torch.set_num_threads(args.threads)
    policy, tokenizer = load_policy(args.init, args.device, dtype=torch.float32)  # fp32 master weights
    reference = copy.deepcopy(policy).eval()
    value_model = scalar_model_from_policy(policy)
    scorer = build_scorer(args, tokenizer)
    data = load_task(task_config)
    evaluate = make_rl_evaluator(
        tokenizer,
        [p.prompt for p in data.heldout],
        [p.answer for p in data.heldout],
        r1_zero_reward_fn,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
    )
    questions = [(p.prompt, p.answer) for p in data.train]
    print(
        f"PPO from {args.init} against the {args.reward}: {len(questions)} questions, {len(data.heldout)} held out"
    )
    start = time.time()
    before = evaluate(policy)
    result = train_ppo(
        policy,
        value_model,
        reference,
        tokenizer,
        questions,
        scorer,
        config,
        evaluate=evaluate,
        callback=lambda m: print(format_metrics(m, time.time() - start), flush=True),
        checkpoint_dir=args.out / "checkpoints",
        resume=args.resume,
    )
    after = result.evaluation or evaluate(policy)
    save_policy(policy, policy_path(args.out, args.init), tokenizer=tokenizer)
    save_reward_model(
        value_model,
        args.out / ("value_model.pt" if policy_path(args.out, args.init).suffix else "value_model"),
        tokenizer,
    )
    history = [{"step": 0, **before}, *result.history]
    keys = ["rm_score", "true_reward", "kl", "heldout_accuracy"]
    curve = save_curve(history, keys, args.out / "ppo_curve.png", f"PPO against the {args.reward}")
    print(rl_table(before, after))
    print(f"saved the policy to {args.out}, the curve to {curve} ({time.time() - start:.0f}s)")
    return 0


if __name__ == "__main__":
    run_main(main)
