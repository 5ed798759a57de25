"""The tokenizer matches special tokens in the given order, not longest first."""

from __future__ import annotations

import regex

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_tokenizer_overlapping_special_tokens",
]


class _InOrder:
    def __init__(self, inner, plain, specials):
        self.inner, self.plain, self.specials = inner, plain, specials
        self.decode = inner.decode

    def encode(self, text):
        if not self.specials:
            return self.plain.encode(text)
        pattern = "(" + "|".join(regex.escape(t) for t in self.specials) + ")"  # the mistake: not sorted
        ids = []
        for piece in regex.split(pattern, text):
            ids += self.inner.encode(piece) if piece in self.specials else self.plain.encode(piece)
        return ids

    def encode_iterable(self, iterable):
        for chunk in iterable:
            yield from self.encode(chunk)


_get_tokenizer = get_tokenizer  # noqa: F405


def get_tokenizer(vocab, merges, special_tokens=None):
    return _InOrder(_get_tokenizer(vocab, merges, special_tokens), _get_tokenizer(vocab, merges, None), special_tokens)
