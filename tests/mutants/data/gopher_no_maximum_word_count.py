"""The Gopher filter forgets the maximum word count (100,000 words)."""

from __future__ import annotations

from data.gopher import GopherConfig, gopher_quality_filter
from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_gopher.py::test_maximum_word_count",
]


def run_gopher_quality_filter(text):
    return gopher_quality_filter(text, GopherConfig(max_words=10**12))  # the mistake: no upper bound
