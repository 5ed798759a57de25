"""Sampling text from a trained TransformerLM: temperature, top-p (nucleus), a key/value cache.

Course handout (CS336 assignment 1), section "Decoding". One step of decoding turns the logits of the
last position into a distribution and draws the next token from it:

    p = softmax(logits / temperature)           temperature -> 0: greedy (argmax); 1: the model's own p
    top-p: keep the smallest set of most likely tokens whose probability sums to >= top_p, renormalise

Nucleus sampling is from Holtzman et al., "The Curious Case of Neural Text Degeneration" (2020).

The key/value cache (``model.new_kv_cache()``, see basics/model.py) stores each layer's keys and values
for the positions seen so far, so after the prompt each new token costs one position instead of the
whole prefix. Without it every step re-runs the model on the last ``context_length`` tokens. Beyond
the context window the cached path does the same as the uncached one (it re-encodes the last
``context_length`` tokens every step), so both paths give the same tokens under greedy decoding.

Simplifications: prompts in a batch must have equal length (no left padding); a row that produced
``eos_token_id`` keeps it and is padded with ``eos_token_id`` until every row is done.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from basics.model import KVCache
from basics.pretokenization import ENDOFTEXT
from basics.tokenizer import eos_token_id

__all__ = [
    "generate",
    "generate_text",
    "sample_next_token",
    "SampleConfig",
    "load_trained_model",
    "find_tokenizer_dir",
]


def sample_next_token(
    logits: Float[Tensor, "batch vocab"],
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> Int[Tensor, " batch"]:
    """Draw one token id per row from ``softmax(logits / temperature)`` restricted to the top-p nucleus.

    ``temperature == 0`` is greedy decoding (argmax). Computed in fp32 (softmax of bf16 logits is too
    coarse for small probabilities).

    >>> sample_next_token(torch.tensor([[0.0, 3.0, 1.0]]), temperature=0.0)
    tensor([1])
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)  # the limit of temperature -> 0: all mass on the largest logit
    # Dividing the logits by T < 1 sharpens the distribution, T > 1 flattens it.
    probs = torch.softmax(logits / temperature, dim=-1)  # (batch, vocab)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (batch, vocab) each
        # A token is in the nucleus if the tokens before it sum to less than top_p; the most likely
        # token always is (its prefix sum is 0).
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)  # back to vocabulary order
    # multinomial renormalises the kept probabilities.
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompt_ids: Int[Tensor, "batch prompt"] | Sequence[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos_token_id: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> Int[Tensor, "batch new"]:
    """Continue each prompt by up to ``max_new_tokens`` tokens; returns only the new tokens.

    ``prompt_ids`` is a (batch, prompt) tensor of equal-length prompts, or one prompt as a list of ints
    (then batch = 1). Generation stops early once every row has produced ``eos_token_id``; a finished
    row is padded with ``eos_token_id``. ``generator`` (on the model's device) makes sampling
    reproducible. The model is put in eval mode for the call and restored afterwards.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    tokens = _prompt_batch(prompt_ids, next(model.parameters()).device)  # (batch, prompt)
    batch, device = tokens.shape[0], tokens.device
    was_training = model.training
    model.eval()  # no dropout while sampling
    try:
        new: list[Tensor] = []
        done = torch.zeros(batch, dtype=torch.bool, device=device)  # rows that have emitted EOS
        cache: KVCache | None = None
        for _ in range(max_new_tokens):
            logits, cache = _last_logits(model, tokens, cache, use_cache)  # (batch, vocab)
            next_token = sample_next_token(logits, temperature, top_p, generator)  # (batch,)
            if eos_token_id is not None:
                # A finished row keeps emitting EOS, so the batch stays rectangular.
                next_token = torch.where(done, torch.full_like(next_token, eos_token_id), next_token)
                done |= next_token == eos_token_id
            new.append(next_token)
            tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (batch, prompt + generated so far)
            if eos_token_id is not None and bool(done.all()):  # one host sync per token: stop early
                break
    finally:
        model.train(was_training)
    if not new:
        return torch.empty(batch, 0, dtype=torch.long, device=device)
    return torch.stack(new, dim=1)  # (batch, new)


def _prompt_batch(prompt_ids: Tensor | Sequence[int], device: torch.device) -> Int[Tensor, "batch prompt"]:
    """The prompt as a (batch, prompt) long tensor on ``device``; one list of ints is a batch of one."""
    if isinstance(prompt_ids, Tensor):
        prompt = prompt_ids.to(device=device, dtype=torch.long)
        if prompt.dim() == 1:
            prompt = prompt.unsqueeze(0)
    else:
        prompt = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(
            f"prompt_ids must be a non-empty (batch, prompt) tensor or list; got shape {tuple(prompt.shape)}"
        )
    return prompt


def _last_logits(
    model: torch.nn.Module, tokens: Tensor, cache: KVCache | None, use_cache: bool
) -> tuple[Float[Tensor, "batch vocab"], KVCache | None]:
    """Logits of the next token after ``tokens``, and the cache to use for the step after."""
    context_length = model.config.context_length
    if not use_cache:
        return model(tokens[:, -context_length:])[:, -1], None  # crop to the context window
    if cache is None or cache.length >= context_length:
        # Prefill: the first step, or the window is full (re-encode the last context_length tokens;
        # cached keys were rotated for positions that no longer exist in the cropped window).
        cache = model.new_kv_cache()
        return model(tokens[:, -context_length:], kv_cache=cache)[:, -1], cache
    # Decode: only the newest token goes through the model; the cache holds every earlier k, v.
    return model(tokens[:, -1:], kv_cache=cache)[:, -1], cache


def _eos_id(tokenizer: Any, eos: str) -> int | None:
    """The id of ``eos``, or None when the tokenizer has no single token for it (then no early stop)."""
    try:
        return eos_token_id(tokenizer, eos)
    except ValueError:
        return None


def generate_text(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 256,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    eos: str = ENDOFTEXT,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> str:
    """The text the model writes after ``prompt``, up to (not including) ``eos`` or ``max_new_tokens``.

    An empty prompt starts from ``eos``, i.e. at the beginning of a new document.
    """
    eos_id = _eos_id(tokenizer, eos)
    prompt_ids = tokenizer.encode(prompt) if prompt else []
    if not prompt_ids:
        if eos_id is None:
            raise ValueError(f"empty prompt and the tokenizer has no single id for {eos!r} to start from")
        prompt_ids = [eos_id]
    out = generate(
        model,
        prompt_ids,
        max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        eos_token_id=eos_id,
        use_cache=use_cache,
        generator=generator,
    )[0].tolist()
    if eos_id is not None and eos_id in out:
        out = out[: out.index(eos_id)]
    return tokenizer.decode(out)


# ----------------------------------------------------------------------------- from a training run


@dataclass(frozen=True)
class SampleConfig:
    """Sampling from a trained model (the flags of scripts/generate.py)."""

    prompt: str = field(default="", metadata={"help": 'text to continue ("" = start a new document)'})
    max_new_tokens: int = field(default=200, metadata={"help": "tokens to generate per sample"})
    temperature: float = field(default=0.8, metadata={"help": "softmax temperature (0 = greedy)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus size (1 = off)"})
    num_samples: int = field(default=1, metadata={"help": "independent samples of the same prompt"})
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    use_cache: bool = field(default=True, metadata={"help": "KV cache (same tokens, faster)"})
    device: str = field(default="cpu", metadata={"help": "cpu | cuda | cuda:N | mps"})

    def __post_init__(self) -> None:
        for name, low in (("max_new_tokens", 0), ("num_samples", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"SampleConfig.{name} must be an integer >= {low}; got {value!r}")
        # isfinite first: NaN passes every comparison-based range check.
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"SampleConfig.temperature must be a finite number >= 0; got {self.temperature}")
        if not math.isfinite(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"SampleConfig.top_p must be in (0, 1]; got {self.top_p}")


def _resolve_checkpoint(run: str | os.PathLike) -> Path:
    from basics.checkpoint import latest_checkpoint

    path = Path(run)
    if path.is_file():
        return path
    if path.is_dir():
        found = latest_checkpoint(path / "checkpoints") or latest_checkpoint(path)
        if found is not None:
            return found
        raise FileNotFoundError(f"no checkpoint_<step>.pt in {path} or {path / 'checkpoints'}")
    raise FileNotFoundError(f"no such run directory or checkpoint: {path}")


def load_trained_model(
    run: str | os.PathLike, device: str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any], Path]:
    """The model of a training run (a run directory's latest checkpoint, or a checkpoint file), in eval mode.

    Returns ``(model, config, checkpoint_path)``; ``config`` is the dict stored with the checkpoint
    (a TrainConfig with a ``model`` entry, or a ModelConfig itself).
    """
    from basics.checkpoint import load_checkpoint, read_checkpoint_config
    from basics.device import check_device
    from basics.model import ModelConfig, TransformerLM

    checkpoint = _resolve_checkpoint(run)
    config = read_checkpoint_config(checkpoint)
    if not isinstance(config, dict):
        raise ValueError(f"{checkpoint} was saved without a config; cannot rebuild the model")
    model_fields = config.get("model", config)
    try:
        model_config = ModelConfig.from_dict(model_fields)
    except TypeError as error:
        raise ValueError(f"{checkpoint}: stored config is not a ModelConfig: {error}") from None
    model = TransformerLM(model_config, device=check_device(device))
    load_checkpoint(checkpoint, model)
    return model.eval(), config, checkpoint


def find_tokenizer_dir(config: dict[str, Any], run: str | os.PathLike) -> Path | None:
    """Where a run's tokenizer files (vocab.json, merges.txt) are: beside the run, or beside its data.

    ``basics.prepare`` keeps the tokenizer in ``<prepared dir>/tokenizer`` next to ``train.npy``.
    """
    run = Path(run)
    candidates = [run / "tokenizer", run.parent / "tokenizer", run.parent.parent / "tokenizer"]
    if config.get("train_data"):
        candidates.append(Path(config["train_data"]).parent / "tokenizer")
    for directory in candidates:
        if (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
            return directory
    return None


def check_tokenizer_fits(tokenizer: Any, vocab_size: int) -> None:
    """Raise ValueError when ``tokenizer`` can produce an id the model has no embedding row for
    (a tokenizer from another run): the lookup would fail mid-generation, or silently on a GPU."""
    largest = max(tokenizer.vocab)
    if largest >= vocab_size:
        raise ValueError(
            f"the tokenizer has ids up to {largest} but the model's vocab_size is {vocab_size}: "
            "is it the tokenizer of this run? (pass the right --tokenizer-dir)"
        )
