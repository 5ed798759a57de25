"""encode_iterable joins the whole iterable first (not lazy: an endless stream never yields)."""

from __future__ import annotations

from basics.tokenizer import Tokenizer
from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_encode_iterable_is_lazy",
]


class _Eager(Tokenizer):
    def encode_iterable(self, iterable):
        yield from self.encode("".join(iterable))  # the mistake: reads everything before the first id


def get_tokenizer(vocab, merges, special_tokens=None):
    return _Eager(vocab, merges, special_tokens)
