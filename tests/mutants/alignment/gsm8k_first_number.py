"""The GSM8K parser returns the first number of the response instead of the last."""

from __future__ import annotations

import re

from tests.alignment.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/alignment/core/test_rewards.py::test_parse_gsm8k_response",
]


def run_parse_gsm8k_response(model_output):
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", model_output)
    return numbers[0].replace(",", "").rstrip(".") if numbers else None  # the mistake: [0], not [-1]
