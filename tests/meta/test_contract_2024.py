"""The core graders accept the 2024 release of the A1 contract: tests/basics/adapters_2024.py (given as
a FILE path, as an instructor would give a student's) passes every core grader it can reach; only the
graders of 2025-only functions (RoPE on its own, MHA with RoPE) are skipped as not implemented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grading import child_env

pytestmark = [pytest.mark.extension, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_2024_adapters_pass_the_core_graders(tmp_path):
    command = [
        sys.executable, "-m", "pytest", "tests/basics/core", "-q", "-p", "no:cacheprovider",
        "--adapters", f"basics={ROOT / 'tests' / 'basics' / 'adapters_2024.py'}", "--grade", str(tmp_path / "r.json"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, env=child_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    tests = json.loads((tmp_path / "r.json").read_text())["tests"]
    lost = {t["name"].split("::")[-1].split("[")[0] for t in tests if t["score"] < t["max_score"]}
    assert lost == {"test_rope", "test_multihead_self_attention_with_rope"}, lost
    assert all(t["output"].startswith("not implemented") for t in tests if t["score"] < t["max_score"])
