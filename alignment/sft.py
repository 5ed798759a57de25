"""Supervised fine-tuning (SFT): the per-token pieces, packed instruction data, and the training loop.

Follows the course's alignment handout (SFT section) and Ouyang et al. 2022 / Taori et al. 2023 (Alpaca)
for the instruction template. The loss is the negative log-likelihood of the *response* tokens only:
prompt and padding positions are masked out with ``response_mask``.

Worked example (character tokenizer, ``a`` = 1, ``b`` = 2, ...): prompt "ab" and output "c" give the
full sequence [1, 2, 3]; ``input_ids`` = [1, 2], ``labels`` = [2, 3] and ``response_mask`` = [False, True]
(only the label 3 belongs to the output).

Simplifications: one device, no sequence packing inside the masked-loss loop (packing is offered as a
separate ``PackedSFTDataset`` for plain instruction tuning), and no loss-weighting schemes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alignment.interop import (
    bos_token_id,
    encode,
    eos_text,
    eos_token_id,
    model_device,
    model_logits,
    pad_token_id,
)
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

ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{prompt}\n\n### Response:\n{response}"
)


# ----------------------------------------------------------------------------------------------------
# Per-token pieces


def tokenize_prompt_and_output(
    prompt_strs: Sequence[str], output_strs: Sequence[str], tokenizer: Any
) -> dict[str, Tensor]:
    """Tokenize prompts and outputs separately, concatenate, right-pad to the longest, shift by one.

    Returns ``input_ids`` and ``labels`` of shape (batch, max_len - 1) and a bool ``response_mask``
    that is True where the *label* is an output token.
    """
    if len(prompt_strs) != len(output_strs):
        raise ValueError(f"got {len(prompt_strs)} prompts but {len(output_strs)} outputs")
    if not prompt_strs:
        raise ValueError("tokenize_prompt_and_output needs at least one example")
    # Encoded separately so the boundary is known exactly (encoding the concatenation could merge
    # tokens across it).
    prompts = [encode(tokenizer, p) for p in prompt_strs]
    outputs = [encode(tokenizer, o) for o in output_strs]
    lengths = [len(p) + len(o) for p, o in zip(prompts, outputs)]
    max_len = max(lengths)
    if max_len < 2:
        raise ValueError("every prompt+output is shorter than two tokens: nothing to predict")
    pad = pad_token_id(tokenizer)
    full = torch.full((len(prompts), max_len), pad, dtype=torch.long)  # (batch, max_len), right-padded
    mask = torch.zeros((len(prompts), max_len), dtype=torch.bool)  # True on output tokens
    for i, (p, o) in enumerate(zip(prompts, outputs)):
        full[i, : len(p) + len(o)] = torch.tensor(p + o, dtype=torch.long)
        mask[i, len(p) : len(p) + len(o)] = True
    # Shift by one: input t predicts label t = token t + 1, so the mask follows the labels.
    return {"input_ids": full[:, :-1], "labels": full[:, 1:], "response_mask": mask[:, 1:]}


def compute_entropy(logits: Float[Tensor, "... vocab"]) -> Float[Tensor, "..."]:
    """Entropy of the next-token distribution, H = logsumexp(z) - sum softmax(z) z, in fp32 for stability."""
    z = logits.float()  # fp32: logsumexp and softmax of bf16 logits lose the small probabilities
    log_probs = z - torch.logsumexp(z, dim=-1, keepdim=True)  # log softmax, (..., vocab)
    return -(log_probs.exp() * log_probs).sum(dim=-1).to(logits.dtype)  # H = -sum p log p


def get_response_log_probs(
    model: Any,
    input_ids: Int[Tensor, "batch seq"],
    labels: Int[Tensor, "batch seq"],
    return_token_entropy: bool = False,
) -> dict[str, Float[Tensor, "batch seq"]]:
    """Per-token log p(label | prefix) under ``model`` (and the per-token entropy when asked)."""
    logits = model_logits(model, input_ids).float()  # fp32: log-softmax over a large vocabulary
    # (batch, seq, vocab) -> pick each position's label -> (batch, seq)
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    result = {"log_probs": log_probs}
    if return_token_entropy:
        result["token_entropy"] = compute_entropy(logits)
    return result


def masked_normalize(
    tensor: Tensor, mask: Tensor, dim: int | None = None, normalize_constant: float = 1.0
) -> Tensor:
    """Sum of the elements where ``mask`` is True (over ``dim``, or all of them), divided by a constant."""
    if normalize_constant == 0:
        raise ValueError("normalize_constant must be non-zero")
    # where, not tensor * mask: a masked -inf or NaN (e.g. a padded position) must not poison the sum.
    masked = torch.where(mask.bool(), tensor, torch.zeros_like(tensor))
    total = masked.sum() if dim is None else masked.sum(dim=dim)
    return total / normalize_constant


def sft_microbatch_train_step(
    policy_log_probs: Float[Tensor, "batch seq"],
    response_mask: Bool[Tensor, "batch seq"],
    gradient_accumulation_steps: int,
    normalize_constant: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One microbatch of SFT: loss = mean over the batch of -sum(masked log-probs) / constant, divided by
    the accumulation steps; calls ``backward()`` and returns the (scaled) loss and some statistics."""
    if gradient_accumulation_steps < 1:
        raise ValueError(f"gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}")
    per_example = -masked_normalize(
        policy_log_probs, response_mask, dim=-1, normalize_constant=normalize_constant
    )
    # / accumulation steps: the summed gradients of the microbatches equal one batch-mean gradient.
    loss = per_example.mean() / gradient_accumulation_steps
    loss.backward()
    tokens = response_mask.sum()
    # For logging: the loss before the accumulation division, and the plain per-token NLL.
    metadata = {
        "unscaled_loss": per_example.mean().detach(),
        "response_tokens": tokens.detach(),
        "nll_per_token": (-masked_normalize(policy_log_probs, response_mask) / tokens.clamp(min=1)).detach(),
    }
    return loss.detach(), metadata


# ----------------------------------------------------------------------------------------------------
# Packed instruction data


def format_example(prompt: str, response: str, template: str = ALPACA_TEMPLATE) -> str:
    return template.format(prompt=prompt, response=response)


def read_prompt_response_jsonl(path: str | Path) -> list[dict[str, str]]:
    """Read a JSONL file of ``{"prompt": ..., "response": ...}`` objects (strings; errors name file:line)."""
    records = read_jsonl(path, {"prompt": str, "response": str}, "SFT data")
    return [{"prompt": r["prompt"], "response": r["response"]} for r in records]


class PackedSFTDataset(torch.utils.data.Dataset):
    """Instruction examples rendered through a template, wrapped as BOS + text + EOS, concatenated into one
    token stream (in shuffled order when asked) and cut into non-overlapping windows of ``seq_length``.

    Item ``i`` is ``{"input_ids": stream[i*L : (i+1)*L], "labels": stream[i*L+1 : (i+1)*L+1]}``.
    """

    def __init__(
        self,
        tokenizer: Any,
        examples: str | Path | Sequence[dict[str, str]],
        seq_length: int,
        shuffle: bool = False,
        template: str = ALPACA_TEMPLATE,
        seed: int = 0,
    ):
        if seq_length < 1:
            raise ValueError(f"seq_length must be >= 1, got {seq_length}")
        if isinstance(examples, (str, Path)):
            examples = read_prompt_response_jsonl(examples)
        examples = list(examples)
        if shuffle:
            random.Random(seed).shuffle(examples)
        bos, eos = bos_token_id(tokenizer), eos_token_id(tokenizer)
        # One stream of [BOS text EOS] per example; windows may cut through examples (that is packing).
        stream: list[int] = []
        for example in examples:
            text = format_example(example["prompt"], example["response"], template)
            stream.extend([bos, *encode(tokenizer, text), eos])
        self.tokens = torch.tensor(stream, dtype=torch.long)
        self.seq_length = seq_length
        if len(self) == 0:
            raise ValueError(f"{len(stream)} tokens are not enough for one window of seq_length {seq_length}")

    def __len__(self) -> int:
        # Each window needs one token beyond it for its last label: hence len - 1.
        return max(0, (len(self.tokens) - 1) // self.seq_length)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} windows")
        i = i % len(self)  # negative indices count from the end, as for a list
        start = i * self.seq_length
        return {
            "input_ids": self.tokens[start : start + self.seq_length],
            "labels": self.tokens[start + 1 : start + self.seq_length + 1],
        }


def iterate_batches(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[dict[str, Tensor]]:
    """One pass over ``dataset`` in batches (the last one may be smaller), stacking each field."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))  # one epoch
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in order[start : start + batch_size]]
        yield {key: torch.stack([item[key] for item in items]) for key in items[0]}  # (batch, seq_length)


# ----------------------------------------------------------------------------------------------------
# The training loop


@dataclass(frozen=True)
class SFTConfig:
    steps: int = 300  # optimizer steps
    batch_size: int = 32  # examples per optimizer step
    gradient_accumulation_steps: int = 1  # microbatches per step (batch_size must divide evenly)
    learning_rate: float = 3e-3  # peak learning rate
    min_learning_rate: float | None = None  # learning rate at the end of the cosine (None: peak / 10)
    warmup_steps: int = 20  # linear warmup steps
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping threshold (0: no clipping)
    append_eos: bool = True  # add the EOS token after each response so the model learns to stop
    eval_every: int = 50  # steps between calls of the evaluation callback (0: never)
    checkpoint_every: int = 100  # steps between resumable checkpoints (0: only at the end)
    seed: int = 0  # shuffling seed

    def __post_init__(self) -> None:
        check_config(
            self,
            positive=("steps", "batch_size", "gradient_accumulation_steps", "learning_rate"),
            non_negative=("warmup_steps", "weight_decay", "max_grad_norm")
            + ("eval_every", "checkpoint_every"),
        )
        if self.batch_size % self.gradient_accumulation_steps:
            raise ValueError(
                f"SFTConfig.batch_size ({self.batch_size}) must be divisible by "
                f"gradient_accumulation_steps ({self.gradient_accumulation_steps})"
            )
        if self.min_learning_rate is not None and not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError(
                f"SFTConfig.min_learning_rate must be in [0, learning_rate = {self.learning_rate}], got {self.min_learning_rate}"
            )

    @property
    def final_learning_rate(self) -> float:
        return self.learning_rate / 10 if self.min_learning_rate is None else self.min_learning_rate


def sft_step_loss(
    model: Any, tokenizer: Any, chunk: Sequence[tuple[str, str]], eos: str, accumulation: int
) -> tuple[float, int]:
    """Forward and backward one microbatch of (prompt, response) pairs; returns (loss, response tokens)."""
    data = tokenize_prompt_and_output([p for p, _ in chunk], [r + eos for _, r in chunk], tokenizer)
    data = {k: v.to(model_device(model)) for k, v in data.items()}  # (batch, seq) each
    with autocast(model):
        log_probs = get_response_log_probs(model, data["input_ids"], data["labels"])["log_probs"]
    # normalise by the mean response length of the microbatch: a per-token loss, comparable across lengths
    count = float(data["response_mask"].sum(dim=-1).float().mean().clamp(min=1))
    loss, meta = sft_microbatch_train_step(log_probs, data["response_mask"], accumulation, count)
    return float(loss), int(meta["response_tokens"])


def train_sft(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[tuple[str, str]],
    config: SFTConfig,
    *,
    evaluate: Evaluate | None = None,
    callback: Callback | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
) -> StageResult:
    """Fine-tune ``model`` on (prompt, response) pairs with the masked response loss.

    Reuses unit 1's AdamW, cosine schedule and gradient clipping; ``callback(metrics)`` after every step
    (with ``evaluate(model)``'s output merged in every ``eval_every`` steps and at the last step);
    checkpoints to ``checkpoint_dir`` every ``checkpoint_every`` steps (``resume=True`` continues from the
    newest one). A non-finite loss or gradient raises ``TrainingDiverged``.
    """
    if not examples:
        raise ValueError("train_sft needs at least one (prompt, response) example")
    eos = eos_text(tokenizer) if config.append_eos else ""
    optimizer = AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    micro = config.batch_size // config.gradient_accumulation_steps
    loop = StageLoop(
        "sft",
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
        # step counts from 1; the schedule from 0, so step 1 uses the schedule's first rate.
        lr = lr_cosine_schedule(
            step - 1, config.learning_rate, config.final_learning_rate, warmup, config.steps
        )
        set_learning_rate(optimizer, lr)
        batch = [examples[rng.randrange(len(examples))] for _ in range(config.batch_size)]
        optimizer.zero_grad(set_to_none=True)
        loss, tokens = 0.0, 0
        for start in range(0, config.batch_size, micro):  # gradient accumulation over microbatches
            chunk_loss, chunk_tokens = sft_step_loss(
                model, tokenizer, batch[start : start + micro], eos, config.gradient_accumulation_steps
            )
            loss, tokens = loss + chunk_loss, tokens + chunk_tokens
        grad_norm = loop.optimizer_step(loss)
        loop.end_step({"loss": loss, "lr": lr, "response_tokens": tokens, "grad_norm": grad_norm})
    return loop.result()
