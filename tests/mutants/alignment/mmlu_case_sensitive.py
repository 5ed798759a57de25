"""The MMLU parser matches "The correct answer is X" case-sensitively and without parentheses, so
"the correct answer is (c)" is unparsed."""

from __future__ import annotations

import re

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_rewards.py::test_parse_mmlu_response",
]


def run_parse_mmlu_response(mmlu_example, model_output):
    found = re.search(r"The correct answer is ([ABCD])\b", model_output)  # the mistake: case, "(c)"
    return found.group(1) if found else None
