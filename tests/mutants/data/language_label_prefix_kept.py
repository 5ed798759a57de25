"""Language ID returns fastText's raw label ("__label__en") instead of "en"."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_language.py::test_identifies_language",
    "tests/data/core/test_language.py::test_multiline_text",
]

_identify = run_identify_language  # noqa: F405


def run_identify_language(text):
    label, score = _identify(text)
    return "__label__" + label, score  # the mistake
