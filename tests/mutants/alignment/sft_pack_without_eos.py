"""The packed SFT dataset relies on the tokenizer's BOS alone: no end-of-text token after each
document, so the model never learns where a response ends."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft_data.py::test_packed_sft_dataset",
]

_packed = get_packed_sft_dataset  # noqa: F405


def get_packed_sft_dataset(tokenizer, dataset_path, seq_length, shuffle):
    dataset = _packed(tokenizer, dataset_path, seq_length, shuffle)
    dataset.tokens = dataset.tokens[dataset.tokens != tokenizer.eos_token_id]  # the mistake
    return dataset
