"""decode decodes each token's bytes on its own and joins the strings, so a character whose bytes
are split over two tokens becomes replacement characters."""

from __future__ import annotations

from basics.tokenizer import Tokenizer
from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_tokenizer_round_trip",
]


class _PerToken(Tokenizer):
    def decode(self, ids):
        return "".join(self.vocab[int(i)].decode("utf-8", errors="replace") for i in ids)


def get_tokenizer(vocab, merges, special_tokens=None):
    return _PerToken(vocab, merges, special_tokens)
