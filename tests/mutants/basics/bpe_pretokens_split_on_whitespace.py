"""BPE pre-tokenizes with a naive pattern, each word with the spaces after it (r"\\S+\\s*"), instead of
the GPT-2 regex: merges join words with their trailing space and punctuation."""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)
from tests.mutants.basics._bpe import train

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_train_bpe_merges_stay_inside_pretokens",
]


def run_train_bpe(input_path, vocab_size, special_tokens, **kwargs):
    return train(input_path, vocab_size, special_tokens, pattern=r"\S+\s*")
