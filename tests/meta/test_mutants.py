"""The mutation meta-grader: every mutant in tests/mutants loses core points and the reference scores
full marks. One process per unit grades all its mutants (tests/mutants/run.py), each on only the
graders named in its KILLED_BY (slow). Fast: every mutant names graders that exist, and the README's
catalogue lists every mutant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grading import child_env
from tests.mutants import catalogue, describe

pytestmark = pytest.mark.extension
ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted({unit for unit, _ in catalogue()})


def test_mutants_name_existing_graders_and_the_readme_lists_them():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"holds {len(catalogue())} realistic student mistakes" in readme
    for unit, mutant in catalogue():
        assert f"| {unit} | `{mutant.rsplit('.', 1)[-1]}` |" in readme, (
            f"the README's catalogue lacks {mutant}"
        )
        mistake, killed_by = describe(mutant)
        assert mistake and killed_by, mutant
        for target in killed_by:
            path, _, function = target.partition("::")
            assert path.startswith(f"tests/{unit}/core/") and (ROOT / path).is_file(), (mutant, target)
            assert not function or f"def {function.split('[')[0]}(" in (ROOT / path).read_text(), (
                mutant,
                target,
            )


@pytest.mark.slow
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
