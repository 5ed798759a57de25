"""The IP pattern accepts any 1-3 digit groups (999.999.999.999 is masked)."""

from __future__ import annotations

import re

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_pii.py::test_ip_octet_bounds",
]


def run_mask_ips(text):
    return re.subn(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", "|||IP_ADDRESS|||", text)
