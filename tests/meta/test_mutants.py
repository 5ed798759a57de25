"""The mutation meta-grader: every mutant in tests/mutants loses core points and the reference scores
full marks. One process per unit grades all its mutants (tests/mutants/run.py), each on only the
graders named in its KILLED_BY."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grading import child_env
from tests.mutants import catalogue, describe

pytestmark = [pytest.mark.extension, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted({unit for unit, _ in catalogue()})


@pytest.mark.parametrize("unit", UNITS)
def test_every_mutant_loses_core_points_and_the_reference_scores_full_marks(unit, tmp_path):
    command = [sys.executable, "-m", "tests.mutants.run", unit, "--out", str(tmp_path / "report.json")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200, env=child_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    reference = report.pop("reference")
    assert not reference.get("error") and not reference["failed"] and not reference["skipped"], reference
    assert reference["score"] == reference["max_score"] > 0
    survivors = {}
    for mutant, result in report.items():
        if result.get("error") or result["score"] >= result["max_score"] or result["skipped"]:
            survivors[mutant] = (describe(mutant)[0], result)
    assert not survivors, survivors
    assert len(report) == sum(1 for u, _ in catalogue() if u == unit)
