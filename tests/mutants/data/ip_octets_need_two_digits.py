"""The IP octet pattern is 25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]\\d: one-digit octets (0.0.0.0, 8.8.8.8)
are missed."""

from __future__ import annotations

import re

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_pii.py::test_ip_formats",
]

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d)"  # the mistake: [1-9]\d, not [1-9]?\d
_PATTERN = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\d|\.\d)")


def run_mask_ips(text):
    return _PATTERN.subn("|||IP_ADDRESS|||", text)
