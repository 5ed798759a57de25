"""Adapters for the alignment graders: the only door from tests/alignment to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/alignment --adapters alignment=student_pkg.adapters`.
"""

from __future__ import annotations
