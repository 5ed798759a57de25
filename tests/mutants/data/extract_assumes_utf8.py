"""HTML to text decodes every page as UTF-8 (errors="replace") instead of detecting its encoding."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_extract.py::test_western_encodings",
]

_extract = run_extract_text_from_html_bytes  # noqa: F405


def run_extract_text_from_html_bytes(html_bytes):
    text = html_bytes.decode("utf-8", errors="replace")  # the mistake: the charset is never looked at
    return _extract(text.replace("windows-1252", "utf-8").encode("utf-8"))
