"""shuffle=True shuffles the packed windows instead of the documents before packing (documents
are cut in the same places every epoch)."""

from __future__ import annotations

import random

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft_data.py::test_packed_sft_dataset_shuffles_documents",
]

_packed = get_packed_sft_dataset  # noqa: F405


class _ShuffledWindows:
    def __init__(self, dataset):
        self.dataset = dataset
        self.order = random.Random(0).sample(range(len(dataset)), len(dataset))

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[self.order[i]]


def get_packed_sft_dataset(tokenizer, dataset_path, seq_length, shuffle):
    dataset = _packed(tokenizer, dataset_path, seq_length, False)
    return _ShuffledWindows(dataset) if shuffle else dataset
