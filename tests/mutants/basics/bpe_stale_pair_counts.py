"""BPE keeps its pair counts after a merge instead of updating the merged pair's neighbours."""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)
from tests.mutants.basics._bpe import train

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_train_bpe_hand_worked_example",
    "tests/basics/core/test_tokenizer.py::test_train_bpe_matches_reference",
]


def run_train_bpe(input_path, vocab_size, special_tokens, **kwargs):
    return train(input_path, vocab_size, special_tokens, stale_counts=True)
