"""The email pattern's local part is [\\w.-]+, so addresses with "+" or "%" are missed."""

from __future__ import annotations

import re

from data.pii import EMAIL_RE
from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_pii.py::test_email_formats",
]

_PATTERN = re.compile(EMAIL_RE.pattern.replace(r"[\w.%+-]+", r"[\w.-]+", 1))  # the mistake


def run_mask_emails(text):
    return _PATTERN.subn("|||EMAIL_ADDRESS|||", text)
