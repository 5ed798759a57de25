"""HTML to text by deleting tags with a regex: script and style contents and comments stay in,
entities are not decoded."""

from __future__ import annotations

import re

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_extract.py::test_visible_text_only",
    "tests/data/core/test_extract.py::test_entities_are_decoded",
]


def run_extract_text_from_html_bytes(html_bytes):
    return re.sub(r"<[^>]*>", "", html_bytes.decode("utf-8", errors="replace")).strip()
