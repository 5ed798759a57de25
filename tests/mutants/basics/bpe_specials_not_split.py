"""BPE pre-tokenizes across special tokens (never splits the text on them), so merges span them."""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)
from tests.mutants.basics._bpe import train

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_train_bpe_special_tokens",
]


def run_train_bpe(input_path, vocab_size, special_tokens, **kwargs):
    return train(input_path, vocab_size, special_tokens, split_specials=False)
