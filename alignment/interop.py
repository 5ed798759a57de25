"""One small door between the alignment code and the two kinds of models and tokenizers it accepts.

Every function in this unit takes

- a *model*: anything that maps ``input_ids`` of shape ``(batch, seq)`` to logits ``(batch, seq, vocab)``,
  either directly (our ``basics.model.TransformerLM``) or as an object with ``.logits`` (a Hugging Face
  causal LM);
- a *tokenizer*: ours (``basics.tokenizer.Tokenizer``: ``encode(str) -> list[int]``, ``decode``, special
  token ``<|endoftext|>``) or a Hugging Face ``PreTrainedTokenizer`` / ``PreTrainedTokenizerFast``.

The helpers below hide the differences (special tokens are never added implicitly; EOS, BOS and PAD ids
are found for both kinds), so ``sft.py``, ``dpo.py`` and ``grpo.py`` read the same for either.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from basics.tokenizer import ENDOFTEXT as END_OF_TEXT
from basics.tokenizer import eos_token_id as _our_eos_token_id


def is_hf_tokenizer(tokenizer: Any) -> bool:
    """Hugging Face tokenizers carry ``pad_token_id`` and ``eos_token_id`` attributes; ours do not."""
    return hasattr(tokenizer, "eos_token_id") and hasattr(tokenizer, "pad_token_id")


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (no BOS, no EOS)."""
    if is_hf_tokenizer(tokenizer):
        return list(tokenizer.encode(text, add_special_tokens=False))
    return list(tokenizer.encode(text))


def decode(tokenizer: Any, ids: list[int]) -> str:
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    return tokenizer.decode(list(ids))


def eos_token_id(tokenizer: Any) -> int:
    """The end-of-sequence id: HF's ``eos_token_id``, or the id of ``<|endoftext|>`` for ours."""
    if is_hf_tokenizer(tokenizer):
        if tokenizer.eos_token_id is None:
            raise ValueError("the Hugging Face tokenizer has no eos_token_id; set tokenizer.eos_token first")
        return int(tokenizer.eos_token_id)
    return _our_eos_token_id(tokenizer, END_OF_TEXT)


def eos_text(tokenizer: Any) -> str:
    """The EOS token as a string that encodes back to the single EOS id (to append to a response)."""
    return tokenizer.eos_token if is_hf_tokenizer(tokenizer) else END_OF_TEXT


def pad_token_id(tokenizer: Any) -> int:
    """The padding id: HF's ``pad_token_id`` when set, else the EOS id (padding is always masked out)."""
    if is_hf_tokenizer(tokenizer) and tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return eos_token_id(tokenizer)


def bos_token_id(tokenizer: Any) -> int:
    """The beginning-of-sequence id: HF's ``bos_token_id`` when set, else EOS (``<|endoftext|>`` is the
    document separator our models were pretrained with, so it doubles as BOS)."""
    if is_hf_tokenizer(tokenizer) and tokenizer.bos_token_id is not None:
        return int(tokenizer.bos_token_id)
    return eos_token_id(tokenizer)


def model_logits(model: Any, input_ids: Int[Tensor, "batch seq"]) -> Float[Tensor, "batch seq vocab"]:
    """Call ``model`` and return its logits, whether it returns a tensor or an object with ``.logits``."""
    out = model(input_ids)
    logits = out.logits if hasattr(out, "logits") else out
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        raise ValueError(
            f"model must return logits of shape (batch, seq, vocab), got {type(logits).__name__}"
        )
    return logits


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free callable)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def is_hf_model(model: Any) -> bool:
    return hasattr(model, "generate") and hasattr(model, "config") and hasattr(model.config, "model_type")
