"""Sampling text completions for a batch of prompts, for either model kind (see ``alignment.interop``).

Our ``TransformerLM`` goes through unit 1's ``basics.generate.generate`` (KV cache, temperature, top-p,
EOS; temperature 0 is greedy), which needs prompts of equal length: prompts are grouped by token length and each group is
generated in chunks of ``batch_size``. A Hugging Face causal LM goes through its own ``generate``
(which draws from torch's global RNG: ``generator`` is not used there).
Any other callable (ids -> logits) gets a plain loop without a cache, which is also the reference the
tests compare against.

Each completion is cut at the first EOS and after the first stop string (the stop string is kept, so
``"</answer>"`` stays in the response the reward function sees).

Simplification: stop strings are applied after generation, so a batch runs until every row has emitted
EOS or ``max_new_tokens`` tokens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from alignment.interop import (
    decode,
    encode,
    eos_token_id,
    is_hf_model,
    model_device,
    model_logits,
    pad_token_id,
)
from basics.generate import generate, sample_next_token


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut ``text`` right after the earliest occurrence of any stop string (kept in the result)."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i + len(s))
    return text[:cut]


@torch.no_grad()
def sample_plain(
    model: Any,
    prompt_ids: Int[Tensor, "batch prompt"],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_token_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch new"]:
    """Reference sampler: re-run the whole sequence each step (no cache). temperature 0 means greedy.

    Rows that have emitted EOS keep emitting EOS; stops early when every row is done.
    """
    ids = prompt_ids
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new = []
    for _ in range(max_new_tokens):
        logits = model_logits(model, ids)[:, -1, :].float()  # (batch, vocab)
        next_ids = sample_next_token(logits, temperature, top_p, generator)  # unit 1's top-p sampler
        if eos_token_id is not None:  # a finished row keeps emitting EOS: the batch stays rectangular
            next_ids = torch.where(done, torch.full_like(next_ids, eos_token_id), next_ids)
            done |= next_ids == eos_token_id
        new.append(next_ids)
        ids = torch.cat([ids, next_ids[:, None]], dim=1)  # (batch, prompt + generated so far)
        if eos_token_id is not None and bool(done.all()):
            break
    if not new:
        return prompt_ids.new_zeros((prompt_ids.shape[0], 0))
    return torch.stack(new, dim=1)


def _generate_ids(
    model: Any,
    ids: Tensor,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    eos: int,
    pad: int,
    generator: torch.Generator | None,
) -> Tensor:
    if is_hf_model(model):
        sample = temperature > 0
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            temperature=temperature if sample else None,
            top_p=top_p if sample else None,
            top_k=None,
            eos_token_id=eos,
            pad_token_id=pad,
        )
        return out[:, ids.shape[1] :]
    # Our TransformerLM has unit 1's cached generation; any other causal LM module samples plainly.
    decode = generate if hasattr(model, "new_kv_cache") else sample_plain
    return decode(
        model,
        ids,
        max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        eos_token_id=eos,
        generator=generator,
    )


def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop: Sequence[str] = (),
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> list[str]:
    """Sample one completion per prompt (repeat a prompt G times for G rollouts); returns decoded strings
    cut at EOS and after the first stop string, in the order of ``prompts``."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = model_device(model)
    eos, pad = eos_token_id(tokenizer), pad_token_id(tokenizer)
    encoded = [encode(tokenizer, p) for p in prompts]
    # Batches of equal-length prompts: no left padding, so no attention mask or position offsets are
    # needed, and every model kind (ours, HF, a plain module) sees exactly its prompt.
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {i} encodes to no tokens")
        by_length[len(ids)].append(i)
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    results: list[str] = [""] * len(prompts)
    try:
        for indices in by_length.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                rows = [encoded[i] for i in chunk]  # all of one length
                ids = torch.tensor(rows, dtype=torch.long, device=device)  # (batch, prompt)
                with torch.no_grad():
                    new = _generate_ids(model, ids, max_new_tokens, temperature, top_p, eos, pad, generator)
                for row, i in zip(new.tolist(), chunk):  # new: (batch, generated)
                    if eos in row:  # finished rows are padded with EOS: keep what came before the first
                        row = row[: row.index(eos)]
                    results[i] = truncate_at_stop(decode(tokenizer, row), stop)
    finally:
        if was_training:
            model.train()
    return results
