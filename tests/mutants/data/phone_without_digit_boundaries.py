"""The phone pattern has no digit boundaries, so ten digits inside a longer number or a decimal
are masked."""

from __future__ import annotations

import re

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_pii.py::test_phone_non_matches",
]

_PATTERN = re.compile(r"(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)|[2-9]\d{2})[ .-]?\d{3}[ .-]?\d{4}")  # the mistake


def run_mask_phone_numbers(text):
    return _PATTERN.subn("|||PHONE_NUMBER|||", text)
