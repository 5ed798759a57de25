"""The Gopher filter drops a document when exactly 30% of its lines end with an ellipsis (>= where
the rule says more than 30%)."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_gopher.py::test_ellipsis_line_fraction",
]

_filter = run_gopher_quality_filter  # noqa: F405


def run_gopher_quality_filter(text):
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    ellipses = sum(line.endswith(("...", "…")) for line in lines)
    if lines and ellipses / len(lines) >= 0.3:  # the mistake: >=
        return False
    return _filter(text)
