"""decode uses errors="ignore" instead of the handout's errors="replace"."""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_tokenizer_decode_replaces_invalid_utf8",
]


class _Ignore:
    def __init__(self, inner, vocab):
        self.inner, self.vocab = inner, vocab
        self.encode, self.encode_iterable = inner.encode, inner.encode_iterable

    def decode(self, ids):
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="ignore")


_get_tokenizer = get_tokenizer  # noqa: F405


def get_tokenizer(vocab, merges, special_tokens=None):
    return _Ignore(_get_tokenizer(vocab, merges, special_tokens), vocab)
