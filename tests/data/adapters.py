"""Adapters for the data graders: the only door from tests/data to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/data --adapters data=student_pkg.adapters`.
"""

from __future__ import annotations


# ---- primitives: reading, extraction, language id, pii, harmful, gopher, quality (issue 6) ----
# (end of section: primitives: reading, extraction, language id, pii, harmful, gopher, quality)


# ---- dedup and pipeline (issue 6) ----
# (end of section: dedup and pipeline)
