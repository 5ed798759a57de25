"""Graders of the student starters (scripts/make_assignment.py): for each assignment a fresh starter
builds as a wheel, its skeleton imports, its graders run and score 0 with every grader skipped as
not implemented and no errors; pointed at this library's adapters it scores full marks; pointed at a
mutant it scores less."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.extension, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENTS = {"a1": "basics", "a2": "systems", "a3": "scaling", "a4": "data", "a5": "alignment"}
# One realistic mistake per assignment, as an adapters file that wraps the reference adapters.
MUTANTS = {
    "a1": ("run_softmax", "def run_softmax(in_features, dim):\n    e = in_features.exp()\n    return e / e.sum(dim, keepdim=True)\n"),
    "a2": ("rmsnorm_backward_x_pytorch", "def rmsnorm_backward_x_pytorch(grad_output, x, g):\n    return grad_output * g\n"),
    "a3": ("run_transformer_parameter_count", "def run_transformer_parameter_count(*args):\n    return REF.run_transformer_parameter_count(*args) + 1\n"),
    "a4": ("run_mask_ips", "import re\n\ndef run_mask_ips(text):\n    return re.subn(r'\\d+\\.\\d+\\.\\d+\\.\\d+', '|||IP_ADDRESS|||', text)\n"),
    "a5": ("run_masked_mean", "def run_masked_mean(tensor, mask, dim=None):\n    return (tensor * mask).mean() if dim is None else (tensor * mask).mean(dim)\n"),
}  # fmt: skip


def make(assignment: str, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "scripts/make_assignment.py", assignment, str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def in_starter(starter: Path, *command: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run in the starter with ONLY the starter importable from the working tree (its skeleton wins)."""
    existing = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p) != ROOT]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(starter), *existing])}
    return subprocess.run(command, cwd=starter, capture_output=True, text=True, timeout=timeout, env=env)


def grade(starter: Path, *options: str) -> dict:
    results = starter / "results.json"
    done = in_starter(starter, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--grade", str(results), *options)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    assert " error" not in done.stdout.splitlines()[-1], done.stdout[-3000:]
    return json.loads(results.read_text())


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_fresh_starter_builds_and_scores_zero(assignment, tmp_path):
    starter = make(assignment, tmp_path / assignment)
    wheel = in_starter(starter, sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "wheel"), ".")
    assert wheel.returncode == 0 and list((tmp_path / "wheel").glob("*.whl")), wheel.stderr[-2000:]
    modules = [p.relative_to(starter).with_suffix("").as_posix().replace("/", ".") for p in starter.glob("*/*.py")]
    imported = in_starter(starter, sys.executable, "-c", "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]", *modules)
    assert imported.returncode == 0, imported.stderr[-2000:]
    results = grade(starter)
    assert results["score"] == 0 and results["max_score"] > 0
    assert all(t["output"].startswith("not implemented") for t in results["tests"]), results["tests"]


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_starter_graders_give_the_reference_full_marks_and_a_mutant_less(assignment, tmp_path):
    unit = ASSIGNMENTS[assignment]
    starter = make(assignment, tmp_path / assignment)
    reference = ROOT / "tests" / unit / "adapters.py"
    results = grade(starter, "--adapters", f"{unit}={reference}")
    assert results["score"] == results["max_score"] > 0, [t for t in results["tests"] if t["score"] < t["max_score"]]
    name, code = MUTANTS[assignment]
    mutant = tmp_path / "mutant_adapters.py"
    mutant.write_text(
        f"from tests.grading import import_adapters\n\nREF = import_adapters({str(reference)!r})\n"
        "globals().update({k: getattr(REF, k) for k in dir(REF) if not k.startswith('_')})\n\n" + code
    )
    target = next(p for p in (starter / "tests").rglob("test_*.py") if name in p.read_text())
    mutated = grade(starter, str(target), "--adapters", f"{unit}={mutant}")
    assert mutated["score"] < mutated["max_score"]
