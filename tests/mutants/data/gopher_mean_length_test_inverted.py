"""The Gopher filter's mean-word-length test is inverted: it drops documents whose mean word length
is inside [3, 10] and keeps those outside."""

from __future__ import annotations

from data.gopher import GopherConfig, gopher_quality_filter
from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_gopher.py::test_real_prose_passes_and_junk_fails",
]
_OTHER_RULES = GopherConfig(min_mean_word_length=0, max_mean_word_length=10**9)


def run_gopher_quality_filter(text):
    words = text.split()
    if words and 3 <= sum(len(w) for w in words) / len(words) <= 10:
        return False  # the mistake: the keep range read as the drop range
    return gopher_quality_filter(text, _OTHER_RULES)
