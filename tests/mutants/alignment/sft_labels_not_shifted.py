"""The packed SFT dataset returns labels equal to input_ids (the shift left to the model, as HF's
``labels=`` argument does), instead of the next tokens."""

from __future__ import annotations

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_sft_data.py::test_packed_sft_dataset",
]

_packed = get_packed_sft_dataset  # noqa: F405


class _SameLabels:
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        input_ids = self.dataset[i]["input_ids"]
        return {"input_ids": input_ids, "labels": input_ids.clone()}


def get_packed_sft_dataset(tokenizer, dataset_path, seq_length, shuffle):
    return _SameLabels(_packed(tokenizer, dataset_path, seq_length, shuffle))
