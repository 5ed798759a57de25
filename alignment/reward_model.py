"""Reward model: a scalar head on a language model, trained on preference pairs with the Bradley-Terry loss.

The first step of RLHF as first described (Ziegler et al. 2019; Stiennon et al. 2020; Ouyang et al. 2022,
section 3.5). A reward model r(x, y) reads a prompt x and a response y and returns one number. Given a
pair in which people preferred y_w to y_l, the Bradley-Terry model says

    P(y_w > y_l | x) = sigmoid(r(x, y_w) - r(x, y_l)),    loss = -log sigmoid(r_w - r_l) = softplus(r_l - r_w)

so only differences of rewards matter. Worked example: r_w = 1.0, r_l = -0.5 give loss
-log sigmoid(1.5) = 0.2014; the pair counts as ranked right (r_w > r_l) for pairwise accuracy.

Architecture: the policy's network with its vocabulary head replaced by a linear map to one number
(``ScalarHeadModel``), initialised from the SFT policy as in InstructGPT. The reward is read at the last
token of ``prompt + response + EOS``, whose hidden state has seen the whole text (causal attention).
The same class gives PPO its value function: one number per position instead of one per sequence.

Simplifications: one comparison per pair (InstructGPT batches all K-choose-2 comparisons of a prompt);
no reward normalisation (PPO whitens its advantages instead); right padding, which causal attention
makes harmless because no real token attends to a later pad.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from alignment.interop import encode, eos_token_id, is_hf_model, model_device, pad_token_id
from alignment.jsonl import read_jsonl
from alignment.loop import (
    Callback,
    Evaluate,
    StageLoop,
    StageResult,
    autocast,
    check_config,
    set_learning_rate,
)
from basics.optim import AdamW, lr_cosine_schedule

Pair = tuple[str, str, str]  # (prompt, chosen response, rejected response)


# ----------------------------------------------------------------------------------------------------
# The loss


def bradley_terry_loss(
    chosen_rewards: Float[Tensor, " batch"], rejected_rewards: Float[Tensor, " batch"]
) -> tuple[Float[Tensor, ""], dict[str, Tensor]]:
    """Mean -log sigmoid(r_w - r_l) over the batch, with pairwise accuracy and mean margin.

    ``logsigmoid`` is evaluated stably (a margin of -100 gives a loss of 100, not inf), in fp32. A tie
    (r_w = r_l, e.g. an untrained zero head) counts as half right, the accuracy of a coin flip.
    """
    margin = chosen_rewards.float() - rejected_rewards.float()  # (batch,)
    # Bradley-Terry: P(y_w preferred to y_l) = sigmoid(r_w - r_l); the loss is its negative log-likelihood.
    loss = -F.logsigmoid(margin).mean()
    accuracy = (margin > 0).float().mean() + 0.5 * (margin == 0).float().mean()
    metrics = {"accuracy": accuracy.detach(), "margin": margin.mean().detach()}
    return loss, metrics


def bradley_terry_loss_reference(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    """The same loss as a plain loop over pairs: -log(1 / (1 + exp(-(r_w - r_l)))), averaged."""
    total = 0.0
    for w, lose in zip(chosen, rejected):
        total += -math.log(1.0 / (1.0 + math.exp(-(w - lose))))
    return total / len(chosen)


# ----------------------------------------------------------------------------------------------------
# The model


class ScalarHeadModel(nn.Module):
    """An LM backbone (no vocabulary head) plus a linear map from its hidden state to one number per
    position: ``forward(ids) -> (batch, seq)``. Used as the reward model and as PPO's value model."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1)
        # zero: every reward (and value) starts at 0, and the first steps move the head before the body
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def is_hf(self) -> bool:
        return not hasattr(self.backbone, "new_kv_cache")

    def forward(self, input_ids: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch seq"]:
        if self.is_hf:  # an HF base model (no LM head) returns an object with the final hidden states
            hidden = self.backbone(input_ids=input_ids).last_hidden_state
        else:  # our TransformerLM with lm_head = Identity returns the final-norm hidden states
            hidden = self.backbone(input_ids)
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)  # (batch, seq)


def scalar_model_from_policy(policy: Any) -> ScalarHeadModel:
    """A copy of ``policy``'s network with its vocabulary head swapped for a zero-initialised scalar head."""
    if is_hf_model(policy):
        return ScalarHeadModel(copy.deepcopy(policy.base_model), policy.config.hidden_size).to(
            model_device(policy)
        )
    backbone = copy.deepcopy(policy)
    backbone.lm_head = nn.Identity()  # hidden states out instead of logits (tied embeddings stay)
    return ScalarHeadModel(backbone, policy.config.d_model).to(model_device(policy))


def encode_sequences(
    tokenizer: Any, prompts: Sequence[str], responses: Sequence[str]
) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, " batch"]]:
    """``prompt + response + EOS`` token ids, right-padded, and each row's length."""
    eos, pad = eos_token_id(tokenizer), pad_token_id(tokenizer)
    # The closing EOS is where the reward is read: its hidden state has seen the whole response.
    rows = [encode(tokenizer, p) + encode(tokenizer, r) + [eos] for p, r in zip(prompts, responses)]
    ids = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, torch.tensor([len(r) for r in rows])


def score(
    model: ScalarHeadModel, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str]
) -> Float[Tensor, " batch"]:
    """r(x, y) for each (prompt, response): the scalar at the final EOS of ``prompt + response + EOS``."""
    ids, lengths = encode_sequences(tokenizer, prompts, responses)
    device = model_device(model)
    with autocast(model):
        values = model(ids.to(device))  # (batch, seq)
    # Row i's value at its last real position (length - 1), skipping the right padding: (batch,)
    return values[torch.arange(len(ids), device=device), lengths.to(device) - 1].float()


@torch.no_grad()
def score_batched(
    model: ScalarHeadModel,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    batch_size: int = 64,
) -> Float[Tensor, " batch"]:
    """``score`` without gradients, in chunks (for evaluation and for PPO's rewards)."""
    chunks = [
        score(model, tokenizer, prompts[i : i + batch_size], responses[i : i + batch_size])
        for i in range(0, len(prompts), batch_size)
    ]
    return torch.cat(chunks)


@torch.no_grad()
def pairwise_accuracy(
    model: ScalarHeadModel, tokenizer: Any, pairs: Sequence[Pair], batch_size: int = 64
) -> dict[str, float]:
    """Share of pairs ranked right (r_w > r_l), the mean margin and the mean BT loss."""
    was_training = model.training
    model.eval()
    prompts = [p for p, _, _ in pairs]
    chosen = score_batched(model, tokenizer, prompts, [c for _, c, _ in pairs], batch_size)
    rejected = score_batched(model, tokenizer, prompts, [r for _, _, r in pairs], batch_size)
    model.train(was_training)
    loss, metrics = bradley_terry_loss(chosen, rejected)
    return {
        "pairwise_accuracy": float(metrics["accuracy"]),
        "margin": float(metrics["margin"]),
        "bt_loss": float(loss),
    }


# ----------------------------------------------------------------------------------------------------
# Data


def read_preference_jsonl(path: str | Path) -> list[Pair]:
    """``{"prompt", "chosen", "rejected"}`` objects (strings) as (prompt, chosen, rejected) triples."""
    records = read_jsonl(path, {"prompt": str, "chosen": str, "rejected": str}, "preference")
    return [(r["prompt"], r["chosen"], r["rejected"]) for r in records]


# ----------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class RewardModelConfig:
    steps: int = 300  # optimizer steps
    batch_size: int = 32  # preference pairs per step
    learning_rate: float = 1e-3  # peak learning rate (tiny CPU models; ~1e-5 for 1B+ models)
    min_learning_rate: float | None = None  # learning rate at the end of the cosine (None: peak / 10)
    warmup_steps: int = 20  # linear warmup steps
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping threshold (0: no clipping)
    eval_every: int = 100  # steps between evaluation callbacks (0: never)
    checkpoint_every: int = 100  # steps between resumable checkpoints (0: only at the end)
    seed: int = 0  # batch sampling seed

    def __post_init__(self) -> None:
        check_config(
            self,
            positive=("steps", "batch_size", "learning_rate"),
            non_negative=("warmup_steps", "weight_decay", "max_grad_norm")
            + ("eval_every", "checkpoint_every"),
        )
        if self.min_learning_rate is not None and not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError(
                f"RewardModelConfig.min_learning_rate must be in [0, learning_rate = {self.learning_rate}], got {self.min_learning_rate}"
            )

    @property
    def final_learning_rate(self) -> float:
        return self.learning_rate / 10 if self.min_learning_rate is None else self.min_learning_rate


def train_reward_model(
    model: ScalarHeadModel,
    tokenizer: Any,
    pairs: Sequence[Pair],
    config: RewardModelConfig,
    *,
    evaluate: Evaluate | None = None,
    callback: Callback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> StageResult:
    """Fit ``model`` to (prompt, chosen, rejected) triples with the Bradley-Terry loss.

    Unit 1's AdamW, cosine schedule and clipping; ``callback(metrics)`` after every step; checkpoints,
    resume and the divergence stop as in ``alignment.sft.train_sft``.
    """
    if not pairs:
        raise ValueError("train_reward_model needs at least one (prompt, chosen, rejected) triple")
    optimizer = AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    loop = StageLoop(
        "reward_model",
        model,
        optimizer,
        config,
        evaluate=evaluate,
        callback=callback,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        rngs={"batches": rng},
    )
    warmup = min(config.warmup_steps, config.steps)
    for step in loop.steps(config.steps):
        lr = lr_cosine_schedule(
            step - 1, config.learning_rate, config.final_learning_rate, warmup, config.steps
        )
        set_learning_rate(optimizer, lr)
        batch = [pairs[rng.randrange(len(pairs))] for _ in range(config.batch_size)]
        prompts = [p for p, _, _ in batch]
        # chosen and rejected in one forward: the same prompts twice, (2 * batch,) rewards
        rewards = score(
            model, tokenizer, prompts + prompts, [c for _, c, _ in batch] + [r for _, _, r in batch]
        )
        loss, stats = bradley_terry_loss(rewards[: len(batch)], rewards[len(batch) :])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = loop.optimizer_step(float(loss.detach()))
        loop.end_step(
            {
                "loss": float(loss.detach()),
                "lr": lr,
                "accuracy": float(stats["accuracy"]),
                "margin": float(stats["margin"]),
                "grad_norm": grad_norm,
            }
        )
    return loop.result()


# ----------------------------------------------------------------------------------------------------
# Saving and loading (like a policy: one checkpoint file for ours, a folder for HF)


def save_reward_model(model: ScalarHeadModel, path: str | Path, tokenizer: Any = None) -> None:
    """Our backbone: a unit-1 checkpoint file with the model config and ``kind: reward_model``. An HF
    backbone: ``save_pretrained`` into the folder ``path`` plus ``scalar_head.safetensors``."""
    if model.is_hf:
        from safetensors.torch import save_file

        model.backbone.save_pretrained(str(path))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))
        save_file(
            {k: v.contiguous() for k, v in model.head.state_dict().items()},
            str(Path(path) / "scalar_head.safetensors"),
        )
        return
    from basics.checkpoint import save_checkpoint

    config = {
        "kind": "reward_model",
        "model": dataclasses.asdict(model.backbone.config),
        "tokenizer": "bytes",
    }
    save_checkpoint(model, None, 0, path, config=config)


def load_reward_model(source: str | Path, device: str | torch.device = "cpu") -> tuple[ScalarHeadModel, Any]:
    """(reward model, tokenizer) from a file or folder written by ``save_reward_model``."""
    path = Path(source)
    if path.is_dir():
        return _load_hf_reward_model(path, device)
    from alignment.tasks import byte_tokenizer
    from basics.checkpoint import load_checkpoint, read_checkpoint_config
    from basics.model import ModelConfig, TransformerLM

    config = read_checkpoint_config(path) or {}
    if config.get("kind") != "reward_model":
        raise ValueError(f"{path} is not a reward model checkpoint (save one with save_reward_model)")
    backbone = TransformerLM.from_config(ModelConfig.from_dict(config["model"]), device=torch.device(device))
    backbone.lm_head = nn.Identity()
    model = ScalarHeadModel(backbone, backbone.config.d_model).to(device)
    load_checkpoint(path, model, map_location=device)
    return model.eval(), byte_tokenizer()


def _load_hf_reward_model(path: Path, device: str | torch.device) -> tuple[ScalarHeadModel, Any]:
    head_file = path / "scalar_head.safetensors"
    if not head_file.is_file():
        raise FileNotFoundError(f"{path} has no scalar_head.safetensors: not a reward model folder")
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    try:
        # safetensors only: a pickled pytorch_model.bin in the folder is refused, never unpickled
        backbone = AutoModel.from_pretrained(str(path), dtype=torch.float32, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except OSError as error:
        raise FileNotFoundError(
            f"cannot load a reward model from {path}: {str(error).splitlines()[0]}"
        ) from None
    model = ScalarHeadModel(backbone, backbone.config.hidden_size)
    model.head.load_state_dict(load_file(str(head_file)))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer
