"""Show that the graders grade (issue 2, section 2): the BPE training suite fails on a deliberately
wrong implementation (tests/basics/broken_adapters.py: ties go to the smallest pair) and passes on
the real one -- the same pytest command, pointed at different adapters with ``--adapters``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

ROOT = Path(__file__).resolve().parents[2]
SUITE = "tests/basics/test_train_bpe.py"


def run_suite(*options: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "pytest",
        SUITE,
        "-q",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        *options,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_suite_fails_on_wrong_tie_break():
    result = run_suite("-x", "--adapters", "basics=tests.basics.broken_adapters")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]  # 1 = tests failed
    assert "FAILED tests/basics/test_train_bpe.py::test_hand_worked_example" in result.stdout


def test_same_suite_passes_on_real_adapters():
    result = run_suite("--adapters", "basics=tests.basics.adapters")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
