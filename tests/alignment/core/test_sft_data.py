"""Graders for packed instruction-tuning data (handout: "data_loading"): ``get_packed_sft_dataset`` and
``run_iterate_batches``.

What the handout fixes, and all these graders check: each ``{"prompt", "response"}`` line of the JSONL
file is rendered through the Alpaca template, tokenized with the tokenizer's own beginning-of-text
token in front, followed by the end-of-text token as the delimiter; the documents (shuffled first
when asked) are concatenated into one stream and cut into consecutive windows of ``seq_length``;
item ``i`` is ``{"input_ids": stream[i*L:(i+1)*L], "labels": stream[i*L+1:(i+1)*L+1]}``.
``run_iterate_batches`` is one epoch over any map-style dataset of such dicts, in batches of
``batch_size`` (the last may be smaller), in order or shuffled.

The tokenizer is a character-level Hugging Face tokenizer built here that behaves like Llama 3's:
``encode(text)`` puts ``<|begin_of_text|>`` in front, ``add_special_tokens=False`` does not, and
``<|end_of_text|>`` in the text encodes to the EOS id -- so adding BOS by hand or letting the
tokenizer add it give the same stream. The window length is chosen so that whether the stream ends
with an EOS, and whether the count is ``(N-1)//L`` or ``N//L``, cannot change the answer (the handout
leaves those edges open). Nothing about shuffling's random numbers is assumed.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.alignment.tiny import ALPHABET

pytestmark = pytest.mark.core

BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
# The handout's instruction template (the Alpaca format), written out here.
ALPACA_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n{prompt}\n\n### Response:\n{response}"
)
EXAMPLES = [
    {"prompt": "Name three primary colours.", "response": "Red, yellow and blue."},
    {"prompt": "What is 12 + 30?", "response": "42"},
    {"prompt": "Give a synonym for happy.", "response": "Cheerful."},
    {"prompt": "Translate 'chat' from French to English.", "response": "Cat."},
    {"prompt": "Write a haiku about rain.", "response": "Soft rain on the roof\nthe gutters sing all night long\nmorning smells of earth"},
    {"prompt": "Is 17 a prime number?", "response": "Yes: its only divisors are 1 and 17."},
    {"prompt": "Sort these numbers: 5, 2, 9.", "response": "2, 5, 9"},
    {"prompt": "What is the capital of Kenya?", "response": "Nairobi."},
    {"prompt": "Explain what a noun is in one sentence.", "response": "A noun is a word that names a person, place, thing or idea."},
]  # fmt: skip


def llama_like_char_tokenizer():
    """A ``PreTrainedTokenizerFast`` with one id per character of ALPHABET, then BOS and EOS."""
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(ALPHABET)}
    vocab[BOS], vocab[EOS] = len(ALPHABET), len(ALPHABET) + 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens([BOS, EOS])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS)


def documents() -> list[list[int]]:
    """Each example as BOS + its rendered characters + EOS (ids computed here, not by the tokenizer)."""
    bos, eos = len(ALPHABET), len(ALPHABET) + 1
    index = {c: i for i, c in enumerate(ALPHABET)}
    return [[bos, *(index[c] for c in ALPACA_TEMPLATE.format(**ex)), eos] for ex in EXAMPLES]


def window_length(n_tokens: int) -> int:
    """A window length at which N % L is neither 0 nor 1: (N-2)//L == (N-1)//L == N//L."""
    return next(length for length in range(48, 96) if n_tokens % length > 1)


@pytest.fixture(scope="module")
def sft_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "sft.jsonl"
    path.write_text("".join(json.dumps(ex) + "\n" for ex in EXAMPLES), encoding="utf-8")
    return path


def as_list(value) -> list[int]:
    return torch.as_tensor(value).tolist()


def windows(dataset) -> list[dict[str, list[int]]]:
    items = [dataset[i] for i in range(len(dataset))]
    return [{"input_ids": as_list(x["input_ids"]), "labels": as_list(x["labels"])} for x in items]


@pytest.mark.points(2, problem="data_loading")
def test_packed_sft_dataset(adapters, sft_file):
    stream = [token for doc in documents() for token in doc]
    length = window_length(len(stream))
    dataset = adapters.get_packed_sft_dataset(
        tokenizer=llama_like_char_tokenizer(), dataset_path=sft_file, seq_length=length, shuffle=False
    )
    assert len(dataset) == (len(stream) - 1) // length
    for i, item in enumerate(windows(dataset)):
        assert item["input_ids"] == stream[i * length : (i + 1) * length], f"input_ids of window {i}"
        assert item["labels"] == stream[i * length + 1 : (i + 1) * length + 1], f"labels of window {i}"


@pytest.mark.points(1, problem="data_loading")
def test_packed_sft_dataset_shuffles_documents(adapters, sft_file):
    originals = documents()
    stream = [token for doc in originals for token in doc]
    length = window_length(len(stream))
    dataset = adapters.get_packed_sft_dataset(
        tokenizer=llama_like_char_tokenizer(), dataset_path=sft_file, seq_length=length, shuffle=True
    )
    items = windows(dataset)
    assert len(items) == (len(stream) - 1) // length
    tokens = [token for item in items for token in item["input_ids"]] + items[-1]["labels"][-1:]
    for a, b in zip(items, items[1:]):  # labels continue the stream across windows
        assert a["labels"] == a["input_ids"][1:] + b["input_ids"][:1]
    # Whole documents in another order: cut the packed stream before each BOS.
    bos = len(ALPHABET)
    starts = [i for i, token in enumerate(tokens) if token == bos]
    assert starts and starts[0] == 0, "the stream must start with a document's BOS"
    complete = [tokens[a:b] for a, b in zip(starts, starts[1:])]  # the last one may be cut off
    assert len(complete) >= len(originals) - 2
    assert all(doc in originals for doc in complete), "shuffle=True must shuffle whole documents"
    assert len({tuple(doc) for doc in complete}) == len(complete), "a document appears twice"
    assert complete != originals[: len(complete)], "shuffle=True kept the file's order"


class Windows(torch.utils.data.Dataset):
    """A map-style dataset of 23 distinct (input_ids, labels) windows of length 6."""

    def __len__(self) -> int:
        return 23

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        row = torch.arange(6) + 10 * i
        return {"input_ids": row, "labels": row + 1}


@pytest.mark.points(1, problem="data_loading")
@pytest.mark.parametrize("shuffle", [False, True])
def test_iterate_batches(adapters, shuffle):
    dataset, batch_size = Windows(), 4
    batches = adapters.run_iterate_batches(dataset=dataset, batch_size=batch_size, shuffle=shuffle)
    if hasattr(batches, "__len__"):
        assert len(batches) == math.ceil(len(dataset) / batch_size)
    batches = list(batches)
    sizes = [len(batch["input_ids"]) for batch in batches]
    assert sizes == [4, 4, 4, 4, 4, 3], "one epoch in batches of batch_size, the last one smaller"
    rows = [row for batch in batches for row in as_list(batch["input_ids"])]
    labels = [row for batch in batches for row in as_list(batch["labels"])]
    assert all(len(row) == 6 for row in rows) and [[t - 1 for t in r] for r in labels] == rows
    firsts = [row[0] // 10 for row in rows]
    assert sorted(firsts) == list(range(23)), "every window exactly once per epoch"
    if shuffle:
        assert firsts != list(range(23)), "shuffle=True kept the dataset's order"
    else:
        assert firsts == list(range(23))
