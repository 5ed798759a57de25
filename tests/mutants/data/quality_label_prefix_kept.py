"""The quality classifier returns fastText's raw label (``__label__wiki``) instead of "wiki"/"cc"."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_quality.py",
]

_classify = run_classify_quality  # noqa: F405


def run_classify_quality(text):
    label, score = _classify(text)
    return f"__label__{label}", score
