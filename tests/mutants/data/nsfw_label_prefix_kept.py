"""The NSFW classifier returns fastText's raw label ("__label__nsfw") instead of "nsfw"."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_harmful.py::test_nsfw_text",
]

_nsfw = run_classify_nsfw  # noqa: F405


def run_classify_nsfw(text):
    label, score = _nsfw(text)
    return "__label__" + label, score  # the mistake
