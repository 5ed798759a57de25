"""Graders of the student starters (scripts/make_assignment.py).

Fast (default suite): each starter's ``tests/adapters.py`` is the course contract -- the functions of
the releases the starter follows, with the course's exact names and parameters, each a stub -- and our
own adapters accept every call the course makes.

Slow, one grader per assignment (one starter built per assignment): a fresh starter builds as a wheel
and its skeleton imports; its graders are the repository's core graders, file for file; they all run
and score 0, each skipped as not implemented, none erroring (fixtures and imports resolve in the
starter); pointed at this library's adapters with one realistic mistake, the first grader of every
starter test file scores full marks and the grader of the mistake scores less (the other graders
are the same files that score full marks here: ``tests/meta/test_mutants.py`` grades the reference
on the whole core suite). Each pytest start in a starter costs seconds (torch, transformers), so
there are two graded runs per starter.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grading import ALIASES, RELEASES, release_signatures

pytestmark = pytest.mark.extension
ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENTS = {"a1": "basics", "a2": "systems", "a3": "scaling", "a4": "data", "a5": "alignment"}
# One realistic mistake per assignment, as an adapters file that wraps the reference adapters, and
# the starter grader that must lose points on it.
MUTANTS = {
    "a1": ("tests/basics/core/test_model.py::test_softmax", "def run_softmax(in_features, dim):\n    e = in_features.exp()\n    return e / e.sum(dim, keepdim=True)\n"),
    "a2": ("tests/systems/core/test_kernels.py::test_rmsnorm_backward_pytorch", "def rmsnorm_backward_x_pytorch(grad_output, x, g):\n    return grad_output * g\n"),
    "a3": ("tests/scaling/core/test_scaling.py::test_parameter_count", "def run_transformer_parameter_count(*args):\n    return REF.run_transformer_parameter_count(*args) + 1\n"),
    "a4": ("tests/data/core/test_pii.py::test_ip_octet_bounds", "import re\n\ndef run_mask_ips(text):\n    return re.subn(r'\\d+\\.\\d+\\.\\d+\\.\\d+', '|||IP_ADDRESS|||', text)\n"),
    "a5": ("tests/alignment/core/test_grpo.py::test_masked_mean_and_empty_rows", "def run_masked_mean(tensor, mask, dim=None):\n    return (tensor * mask).mean() if dim is None else (tensor * mask).mean(dim)\n"),
}  # fmt: skip


def _maker():
    """scripts/make_assignment.py, imported once (registered, as its dataclasses need)."""
    if "make_assignment" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "make_assignment", ROOT / "scripts" / "make_assignment.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_assignment"] = module
        spec.loader.exec_module(module)
    return sys.modules["make_assignment"]


# ---------------------------------------------------------------------------------------- fast


def _signature(function: ast.FunctionDef) -> list[str]:
    arguments = function.args
    names = [a.arg for a in [*arguments.posonlyargs, *arguments.args]]
    names += [f"*{arguments.vararg.arg}"] if arguments.vararg else []
    names += [a.arg for a in arguments.kwonlyargs]
    return names + ([f"**{arguments.kwarg.arg}"] if arguments.kwarg else [])


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_starter_adapters_are_the_course_contract(assignment, tmp_path):
    """The starter's tests/adapters.py defines the functions of the course releases it follows (the
    newest release first and complete) with the course's exact names and parameters, each a stub,
    and nothing else."""
    maker = _maker()
    unit, releases = ASSIGNMENTS[assignment], maker.ASSIGNMENTS[assignment].releases
    assert releases[0] == next(iter(RELEASES[unit])), "a starter follows the newest release"
    expected: dict[str, list[str]] = {}
    for release in releases:
        for name, parameters in release_signatures(unit, release).items():
            expected.setdefault(name, parameters)
    starter = maker.write_starter(assignment, tmp_path / assignment)
    tree = ast.parse((starter / "tests" / "adapters.py").read_text())
    stubs = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert {name: _signature(node) for name, node in stubs.items()} == expected
    for node in stubs.values():
        assert ast.unparse(node.body[-1]) == "raise NotImplementedError", node.name


def test_a1_starter_follows_the_2025_release_only():
    """Spot check of the table itself: the 2025 A1 adapters take Q, K, V (mask True = attend) and
    carry no 2024-only function."""
    a1 = release_signatures("basics", "2025")
    assert a1["run_scaled_dot_product_attention"] == ["Q", "K", "V", "mask"]
    assert "run_gelu" not in a1 and "run_positionwise_feedforward" not in a1 and len(a1) == 21
    assert release_signatures("basics", "2024")["run_scaled_dot_product_attention"] == [
        "K",
        "Q",
        "V",
        "mask",
        "pdrop",
    ]
    assert _maker().ASSIGNMENTS["a1"].releases == ["2025"]


CONTRACT_MODULES = {("basics", "2024"): "tests.basics.adapters_2024"}
OLDER_NAMES = {old: new for new, olds in ALIASES.items() for old in olds}


@pytest.mark.parametrize(
    ("unit", "release"), [(unit, release) for unit, releases in RELEASES.items() for release in releases]
)
def test_our_adapters_take_the_course_parameters(unit, release):
    """Our adapters (what a student is compared with) accept every call of the course's graders: each
    course function exists (or its ALIASES name), its parameters lead ours by name, ours beyond have
    defaults."""
    module = importlib.import_module(CONTRACT_MODULES.get((unit, release), f"tests.{unit}.adapters"))
    for name, parameters in release_signatures(unit, release).items():
        function = getattr(module, name, None) or getattr(module, OLDER_NAMES.get(name, name))
        ours = list(inspect.signature(function).parameters.values())
        shown = [("**" if p.kind is p.VAR_KEYWORD else "") + p.name for p in ours]
        assert shown[: len(parameters)] == parameters, (name, shown)
        extra = ours[len(parameters) :]
        assert all(p.default is not p.empty or p.kind is p.VAR_KEYWORD for p in extra), (name, shown)


def _covers(call: ast.Call, parameters: list[str]) -> bool:
    """Whether ``call`` gives every named parameter exactly once (more keywords only into ``**``)."""
    names = [p for p in parameters if not p.startswith("**")]
    given = names[: len(call.args)] + [k.arg for k in call.keywords]
    if len(parameters) > len(names):  # a **kwargs parameter takes the other keywords
        given = [g for g in given if g in names]
    return len(call.args) <= len(names) and sorted(given) == sorted(names)


@pytest.mark.parametrize("unit", sorted(RELEASES))
def test_core_graders_pass_every_course_parameter(unit):
    """A core grader's call of a course adapter names every parameter of one release (positionally
    or by its course name), so a student's adapter without our defaults still works. Calls that
    unpack ``*args``/``**kwargs`` are left to the runtime."""
    releases = [release_signatures(unit, release) for release in RELEASES[unit]]
    for path in sorted((ROOT / "tests" / unit / "core").glob("test_*.py")):
        for call in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            if not (isinstance(call.func.value, ast.Name) and call.func.value.id == "adapters"):
                continue
            signatures = [r[call.func.attr] for r in releases if call.func.attr in r]
            unpacked = any(isinstance(a, ast.Starred) for a in call.args) or any(
                k.arg is None for k in call.keywords
            )
            if signatures and not unpacked:
                assert any(_covers(call, s) for s in signatures), (
                    f"{path.name}:{call.lineno}: {ast.unparse(call)}"
                )


# ---------------------------------------------------------------------------------------- slow


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
    results.unlink(missing_ok=True)
    done = in_starter(
        starter,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--grade",
        str(results),
        *options,
    )
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    assert " error" not in done.stdout.splitlines()[-1], done.stdout[-3000:]
    return json.loads(results.read_text())


def _core_graders(unit: str) -> set[str]:
    """``path::function`` of every core grader of the unit in this repository (read, not run)."""
    graders = set()
    for path in sorted((ROOT / "tests" / unit / "core").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        relative = path.relative_to(ROOT).as_posix()
        graders |= {
            f"{relative}::{n.name}"
            for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
        }
    return graders


@pytest.mark.slow
@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_starter_builds_scores_zero_and_grades_like_the_repository(assignment, tmp_path):
    """Two graded runs per starter (each pytest start costs seconds): the stubs, then the reference
    with one mistake. Cost: tests/meta/test_starters.py's docstring and the README."""
    unit = ASSIGNMENTS[assignment]
    starter = make(assignment, tmp_path / assignment)
    # A fresh starter builds as a wheel and its skeleton imports.
    wheel = in_starter(
        starter,
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path / "wheel"),
        ".",
    )
    assert wheel.returncode == 0 and list((tmp_path / "wheel").glob("*.whl")), wheel.stderr[-2000:]
    modules = [
        p.relative_to(starter).with_suffix("").as_posix().replace("/", ".") for p in starter.glob("*/*.py")
    ]
    imported = in_starter(
        starter,
        sys.executable,
        "-c",
        "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]",
        *modules,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
    # Its graders are this repository's core graders, file for file (the plugin too).
    copied = [
        p
        for p in (starter / "tests").rglob("*")
        if p.is_file() and p.name not in ("conftest.py", "adapters.py", "__init__.py")
    ]
    assert copied and all(p.read_bytes() == (ROOT / p.relative_to(starter)).read_bytes() for p in copied)
    # Every one of them runs and scores 0: skipped as not implemented (fixtures resolve), no errors.
    results = grade(starter)
    assert results["score"] == 0 and results["max_score"] > 0
    assert all(t["output"].startswith("not implemented") for t in results["tests"]), results["tests"]
    assert {t["name"].split("[")[0] for t in results["tests"]} == _core_graders(unit)
    # This library's adapters with one mistake: the first grader of every file passes, the grader of
    # the mistake loses points.
    target, code = MUTANTS[assignment]
    reference = ROOT / "tests" / unit / "adapters.py"
    mutant = tmp_path / "mutant_adapters.py"
    mutant.write_text(
        f"from tests.grading import import_adapters\n\nREF = import_adapters({str(reference)!r})\n"
        "globals().update({k: getattr(REF, k) for k in dir(REF) if not k.startswith('_')})\n\n" + code
    )
    first: dict[str, str] = {}
    for test in results["tests"]:
        if not test["name"].startswith(target):
            first.setdefault(test["name"].split("::")[0], test["name"])
    graded = grade(starter, *first.values(), target, "--adapters", f"{unit}={mutant}")
    others = [t for t in graded["tests"] if not t["name"].startswith(target)]
    assert len(others) == len(first) and all(t["score"] == t["max_score"] > 0 for t in others), others
    mistaken = [t for t in graded["tests"] if t["name"].startswith(target)]
    assert mistaken and sum(t["score"] for t in mistaken) < sum(t["max_score"] for t in mistaken)
