"""The tokenizer defaults ``special_tokens`` to ["<|endoftext|>"], so without special tokens the
text "<|endoftext|>" still becomes one special id."""

from __future__ import annotations

from basics.tokenizer import Tokenizer
from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_tokenizer_without_special_tokens",
]


def get_tokenizer(vocab, merges, special_tokens=None):
    return Tokenizer(vocab, merges, special_tokens or ["<|endoftext|>"])
