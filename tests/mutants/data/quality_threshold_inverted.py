"""The quality classifier thresholds the wrong class's probability: "wiki" when p(wiki) < 0.5."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_quality.py",
]

_classify = run_classify_quality  # noqa: F405


def run_classify_quality(text):
    label, score = _classify(text)
    p_wiki = score if label == "wiki" else 1.0 - score
    return ("wiki", 1.0 - p_wiki) if p_wiki < 0.5 else ("cc", p_wiki)
