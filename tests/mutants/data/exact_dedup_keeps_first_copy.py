"""Exact line dedup keeps the first copy of a repeated line instead of removing every copy."""

from __future__ import annotations

import os
from pathlib import Path

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_dedup.py",
]


def run_exact_line_deduplication(input_files, output_directory):
    seen = set()
    os.makedirs(output_directory, exist_ok=True)
    for path in input_files:
        kept = []
        for line in Path(path).read_bytes().splitlines(keepends=True):
            if line.rstrip(b"\n") not in seen:  # the mistake: the first copy survives
                seen.add(line.rstrip(b"\n"))
                kept.append(line)
        (Path(output_directory) / Path(path).name).write_bytes(b"".join(kept))
