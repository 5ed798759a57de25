"""Adapters for the scaling graders: the only door from tests/scaling to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/scaling --adapters scaling=student_pkg.adapters`.
"""

from __future__ import annotations
