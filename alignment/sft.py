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

import json
import random
from collections.abc import Callable, Iterator, Sequence
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
from basics.nn_utils import clip_gradients
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
    prompts = [encode(tokenizer, p) for p in prompt_strs]
    outputs = [encode(tokenizer, o) for o in output_strs]
    lengths = [len(p) + len(o) for p, o in zip(prompts, outputs)]
    max_len = max(lengths)
    if max_len < 2:
        raise ValueError("every prompt+output is shorter than two tokens: nothing to predict")
    pad = pad_token_id(tokenizer)
    full = torch.full((len(prompts), max_len), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), max_len), dtype=torch.bool)
    for i, (p, o) in enumerate(zip(prompts, outputs)):
        full[i, : len(p) + len(o)] = torch.tensor(p + o, dtype=torch.long)
        mask[i, len(p) : len(p) + len(o)] = True
    return {"input_ids": full[:, :-1], "labels": full[:, 1:], "response_mask": mask[:, 1:]}


def compute_entropy(logits: Float[Tensor, "... vocab"]) -> Float[Tensor, "..."]:
    """Entropy of the next-token distribution, H = logsumexp(z) - sum softmax(z) z, in fp32 for stability."""
    z = logits.float()  # fp32: logsumexp and softmax of bf16 logits lose the small probabilities
    log_probs = z - torch.logsumexp(z, dim=-1, keepdim=True)
    return -(log_probs.exp() * log_probs).sum(dim=-1).to(logits.dtype)


def get_response_log_probs(
    model: Any,
    input_ids: Int[Tensor, "batch seq"],
    labels: Int[Tensor, "batch seq"],
    return_token_entropy: bool = False,
) -> dict[str, Float[Tensor, "batch seq"]]:
    """Per-token log p(label | prefix) under ``model`` (and the per-token entropy when asked)."""
    logits = model_logits(model, input_ids).float()  # fp32: log-softmax over a large vocabulary
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
    loss = per_example.mean() / gradient_accumulation_steps
    loss.backward()
    tokens = response_mask.sum()
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
    """Read a JSONL file of ``{"prompt": ..., "response": ...}`` objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data file not found: {path}")
    examples = []
    with path.open() as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if "prompt" not in record or "response" not in record:
                raise ValueError(f"{path}:{line_number}: each line needs 'prompt' and 'response' keys")
            examples.append({"prompt": record["prompt"], "response": record["response"]})
    return examples


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
        stream: list[int] = []
        for example in examples:
            text = format_example(example["prompt"], example["response"], template)
            stream.extend([bos, *encode(tokenizer, text), eos])
        self.tokens = torch.tensor(stream, dtype=torch.long)
        self.seq_length = seq_length
        if len(self) == 0:
            raise ValueError(f"{len(stream)} tokens are not enough for one window of seq_length {seq_length}")

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - 1) // self.seq_length)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} windows")
        i = i % len(self)
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
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in order[start : start + batch_size]]
        yield {key: torch.stack([item[key] for item in items]) for key in items[0]}


# ----------------------------------------------------------------------------------------------------
# The training loop


@dataclass(frozen=True)
class SFTConfig:
    steps: int = 300  # optimizer steps
    batch_size: int = 32  # examples per optimizer step
    gradient_accumulation_steps: int = 1  # microbatches per step (batch_size must divide evenly)
    learning_rate: float = 3e-3  # peak learning rate
    min_learning_rate: float = 3e-4  # learning rate at the end of the cosine
    warmup_steps: int = 20  # linear warmup steps
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping threshold
    append_eos: bool = True  # add the EOS token after each response so the model learns to stop
    eval_every: int = 50  # steps between calls of the evaluation callback (0: never)
    seed: int = 0  # shuffling seed


def train_sft(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[tuple[str, str]],
    config: SFTConfig,
    evaluate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
) -> Iterator[dict[str, float]]:
    """Fine-tune ``model`` on (prompt, response) pairs with the masked response loss.

    Reuses unit 1's AdamW, cosine schedule and gradient clipping. Yields one metrics dict per step (with
    the output of ``evaluate(model)`` merged in every ``eval_every`` steps and at the last step).
    """
    if not examples:
        raise ValueError("train_sft needs at least one (prompt, response) example")
    if config.batch_size % config.gradient_accumulation_steps:
        raise ValueError("batch_size must be divisible by gradient_accumulation_steps")
    device = model_device(model)
    eos = eos_text(tokenizer) if config.append_eos else ""
    optimizer = AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = random.Random(config.seed)
    micro = config.batch_size // config.gradient_accumulation_steps
    model.train()
    for step in range(1, config.steps + 1):
        lr = lr_cosine_schedule(
            step - 1,
            config.learning_rate,
            config.min_learning_rate,
            min(config.warmup_steps, config.steps),
            config.steps,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [examples[rng.randrange(len(examples))] for _ in range(config.batch_size)]
        optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens = 0.0, 0
        for start in range(0, config.batch_size, micro):
            chunk = batch[start : start + micro]
            data = tokenize_prompt_and_output([p for p, _ in chunk], [r + eos for _, r in chunk], tokenizer)
            data = {k: v.to(device) for k, v in data.items()}
            log_probs = get_response_log_probs(model, data["input_ids"], data["labels"])["log_probs"]
            # normalise by the response tokens in the microbatch: a per-token mean, comparable across lengths
            count = float(data["response_mask"].sum(dim=-1).float().mean().clamp(min=1))
            loss, meta = sft_microbatch_train_step(
                log_probs, data["response_mask"], config.gradient_accumulation_steps, count
            )
            loss_sum += float(loss)
            tokens += int(meta["response_tokens"])
        grad_norm = clip_gradients(model.parameters(), config.max_grad_norm)
        optimizer.step()
        metrics = {"step": step, "loss": loss_sum, "lr": lr, "response_tokens": tokens}
        if grad_norm is not None:
            metrics["grad_norm"] = float(grad_norm)
        if (
            evaluate is not None
            and config.eval_every
            and (step % config.eval_every == 0 or step == config.steps)
        ):
            model.eval()
            metrics.update(evaluate(model))
            model.train()
        yield metrics
    model.eval()
