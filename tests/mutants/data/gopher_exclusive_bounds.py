"""Gopher's word-count and mean-word-length bounds are exclusive (50 words is dropped)."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_gopher.py::test_minimum_word_count",
    "tests/data/core/test_gopher.py::test_mean_word_length_bounds",
]


_filter = run_gopher_quality_filter  # noqa: F405


def run_gopher_quality_filter(text):
    words = text.split()
    if len(words) <= 50:  # the mistake: the handout keeps 50
        return False
    mean = sum(map(len, words)) / len(words)
    if mean <= 3 or mean >= 10:
        return False
    return _filter(text)
