"""The harmful-content classifiers return P(harmful) as the score whatever the label, not the
confidence of the label they return (a clean text gets ("non-nsfw", 0.02))."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_harmful.py::test_clean_text",
]

_nsfw, _toxic = run_classify_nsfw, run_classify_toxic_speech  # noqa: F405


def run_classify_nsfw(text):
    label, score = _nsfw(text)
    return label, score if label == "nsfw" else 1 - score  # the mistake


def run_classify_toxic_speech(text):
    label, score = _toxic(text)
    return label, score if label == "toxic" else 1 - score  # the mistake
