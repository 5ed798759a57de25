"""encode merges the leftmost mergeable pair first instead of the pair of lowest merge rank."""

from __future__ import annotations

from basics.tokenizer import Tokenizer
from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_tokenizer.py::test_tokenizer_ids_equal_tiktoken_and_hf",
]


class _Leftmost(Tokenizer):
    def _bpe(self, pretoken: str) -> list[int]:
        ids = [self._byte_ids[b] for b in pretoken.encode("utf-8")]
        while True:
            for i, pair in enumerate(zip(ids, ids[1:])):
                if pair in self._ranks:  # the mistake: the first mergeable pair, whatever its rank
                    ids[i : i + 2] = [self._ranks[pair][1]]
                    break
            else:
                return ids


def get_tokenizer(vocab, merges, special_tokens=None):
    return _Leftmost(vocab, merges, special_tokens)
