"""The IP pattern refuses an address followed by a period ((?![\\d.]) to reject 1.2.3.4.5), so an
address at the end of a sentence is missed."""

from __future__ import annotations

import re

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_pii.py::test_ip_trailing_period_stays",
]

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_PATTERN = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d.])")  # the mistake: (?![\d.])


def run_mask_ips(text):
    return _PATTERN.subn("|||IP_ADDRESS|||", text)
