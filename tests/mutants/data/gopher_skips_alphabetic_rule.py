"""The Gopher filter forgets the rule that 80% of words contain an alphabetic character."""

from __future__ import annotations

from data.gopher import GopherConfig, gopher_quality_filter
from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_gopher.py::test_alphabetic_word_fraction",
    "tests/data/core/test_gopher.py::test_real_prose_passes_and_junk_fails",
]


def run_gopher_quality_filter(text):
    return gopher_quality_filter(text, GopherConfig(min_alphabetic_word_fraction=0.0))  # the mistake
