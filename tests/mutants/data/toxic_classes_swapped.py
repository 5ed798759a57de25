"""The toxic-speech classifier reads the model's two classes in the wrong order, so it calls
clean text toxic and insults non-toxic."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_harmful.py::test_toxic_text",
    "tests/data/core/test_harmful.py::test_clean_text",
]

_toxic = run_classify_toxic_speech  # noqa: F405


def run_classify_toxic_speech(text):
    label, score = _toxic(text)
    return ("non-toxic" if label == "toxic" else "toxic"), score  # the mistake
