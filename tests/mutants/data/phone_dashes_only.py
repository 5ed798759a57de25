"""The phone pattern knows only 283-182-3829 (\\d{3}-\\d{3}-\\d{4}): parentheses, dots, spaces and
+1 are missed."""

from __future__ import annotations

import re

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_pii.py::test_phone_formats",
    "tests/data/core/test_pii.py::test_phone_sentence_end_and_count",
]


def run_mask_phone_numbers(text):
    return re.subn(r"\b\d{3}-\d{3}-\d{4}\b", "|||PHONE_NUMBER|||", text)  # the mistake
