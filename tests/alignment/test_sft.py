"""Graders for the SFT pieces: tokenisation with response masks, entropy, response log-probs, masked
normalisation, the SFT microbatch step, and packed instruction data (alignment/sft.py via adapters)."""

from __future__ import annotations

import json

import pytest
import torch

from tests.alignment.tiny import (
    EOS,
    CharTokenizer,
    hf_char_tokenizer,
)

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


@pytest.fixture(scope="module")
def char_tok():
    return CharTokenizer()


@pytest.fixture(scope="module")
def hf_tok():
    return hf_char_tokenizer()


def _stream(tok, examples, template):
    ids = []
    for ex in examples:
        ids += [
            tok.eos_id,
            *tok.encode(template.format(prompt=ex["prompt"], response=ex["response"])),
            tok.eos_id,
        ]
    return ids


def test_packed_sft_dataset_hand_computed(adapters, char_tok):
    examples = [{"prompt": "ab", "response": "c"}, {"prompt": "d", "response": "ee"}]
    dataset = adapters.get_packed_sft_dataset(char_tok, examples, 4, False, template="{prompt}={response}")
    eos, eq = char_tok.eos_id, char_tok.index["="]
    stream = [eos, 0, 1, eq, 2, eos, eos, 3, eq, 4, 4, eos]  # BOS(=EOS) + text + EOS, twice
    assert len(dataset) == (len(stream) - 1) // 4 == 2
    for i in range(2):
        assert dataset[i]["input_ids"].tolist() == stream[4 * i : 4 * i + 4]
        assert dataset[i]["labels"].tolist() == stream[4 * i + 1 : 4 * i + 5]


def test_packed_sft_dataset_from_jsonl_alpaca_and_shuffle(adapters, char_tok, tmp_path):
    template = adapters.get_alpaca_template()
    assert "{prompt}" in template and "{response}" in template and "### Response:" in template
    alphabet_template = (
        template.lower().replace("###", "#").replace("-", " ").replace("(", "").replace(")", "")
    )
    # the Alpaca text has capitals the tiny tokenizer lacks: use a lower-cased copy of the same structure
    examples = [{"prompt": f"add {i} and {i + 1}", "response": f"{2 * i + 1}."} for i in range(7)]
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    dataset = adapters.get_packed_sft_dataset(char_tok, path, 16, False, template=alphabet_template)
    stream = _stream(char_tok, examples, alphabet_template)
    assert len(dataset) == (len(stream) - 1) // 16
    got = torch.cat([dataset[i]["input_ids"] for i in range(len(dataset))]).tolist()
    assert got == stream[: 16 * len(dataset)]
    # shuffled: the same documents in another order
    shuffled = adapters.get_packed_sft_dataset(char_tok, path, 16, True, template=alphabet_template)
    tokens = torch.cat([shuffled[i]["input_ids"] for i in range(len(shuffled))]).tolist()
    assert len(shuffled) == len(dataset) and tokens != got
    original_docs = [d for d in char_tok.decode(stream).split(EOS) if d]
    pieces = [d for d in char_tok.decode(tokens).split(EOS) if d]
    complete = pieces[:-1]  # the last piece may be cut by the window boundary
    assert len(complete) >= 3 and all(d in original_docs for d in complete)
    assert complete != original_docs[: len(complete)]


def test_iterate_batches_covers_every_window_once(adapters, char_tok):
    examples = [{"prompt": "ab" * i, "response": "c" * (i + 1)} for i in range(10)]
    dataset = adapters.get_packed_sft_dataset(char_tok, examples, 5, False, template="{prompt}={response}")
    n = len(dataset)
    for shuffle in (False, True):
        batches = list(adapters.run_iterate_batches(dataset, 4, shuffle))
        assert [b["input_ids"].shape[0] for b in batches] == [4] * (n // 4) + ([n % 4] if n % 4 else [])
        assert all(b["input_ids"].shape[1] == 5 and b["labels"].shape[1] == 5 for b in batches)
        rows = sorted(tuple(r) for b in batches for r in b["input_ids"].tolist())
        assert rows == sorted(tuple(dataset[i]["input_ids"].tolist()) for i in range(n))
    ordered = list(adapters.run_iterate_batches(dataset, 4, False))
    assert ordered[0]["input_ids"][1].tolist() == dataset[1]["input_ids"].tolist()
