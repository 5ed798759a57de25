"""Graders of the grading plugin itself (tests/grading.py), on a toy unit in a temporary folder:
not-implemented skips, points split over parametrized cases, the score table and results.json (also
under pytest-xdist), adapters given as a file path of another repository, a broken adapters module
stopping the run with one line, core graders limited to the course contract, PYTHONPATH prepended."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.grading import child_env

pytestmark = pytest.mark.extension
ROOT = Path(__file__).resolve().parents[2]

TOY_TESTS = '''
import pytest

pytestmark = pytest.mark.core


@pytest.mark.points(2, problem="add")
def test_add(adapters):
    assert adapters.run_add(2, 3) == 5


@pytest.mark.points(3, problem="add")
@pytest.mark.parametrize("a", [1, 2, 3])
def test_add_many(adapters, a):
    assert adapters.run_add(a, a) == 2 * a


@pytest.mark.points(1, problem="mul")
def test_mul(adapters):
    assert adapters.run_mul(2, 3) == 6


@pytest.mark.points(1, problem="mul")
def test_mul_object(adapters):
    assert adapters.get_multiplier().times(2, 3) == 6


@pytest.mark.points(4, problem="div")
def test_div(adapters):
    assert adapters.run_div(6, 3) == 2


@pytest.mark.points(1, problem="sub")
def test_sub_wrong(adapters):
    assert adapters.run_sub(5, 3) == 2


@pytest.mark.extension
def test_no_points(adapters):
    assert adapters.run_add(0, 0) == 0
'''

TOY_ADAPTERS = '''
class Multiplier:
    def times(self, a, b):
        raise NotImplementedError

def run_add(a, b):
    return a + b

def run_mul(a, b):
    raise NotImplementedError

def get_multiplier():
    return Multiplier()

def run_sub(a, b):
    return a + b  # a bug: 1 point lost
'''


def toy_project(tmp_path: Path, unit: str = "toy", adapters: str = TOY_ADAPTERS, tests: str = TOY_TESTS) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text('pytest_plugins = ["tests.grading"]\n')
    (project / "pytest.ini").write_text(
        f"[pytest]\ngrading_adapters = {unit}=toy_adapters\n"
        "markers =\n    core: c\n    extension: e\n    points(n, problem): p\n"
    )
    (project / "toy_adapters.py").write_text(textwrap.dedent(adapters))
    (project / "test_toy.py").write_text(textwrap.dedent(tests))
    return project


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(project), env["PYTHONPATH"]])
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=300, env=env)


def check_results(project: Path, result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # test_sub_wrong fails
    assert "not implemented: run_mul" in output and "not implemented: run_div" in output
    assert "not implemented: times" in output  # a stub method of a returned object
    assert "Error" not in output.split("short test summary")[-1].replace("AssertionError", "")
    results = json.loads((project / "results.json").read_text())
    assert results["max_score"] == 12 and results["score"] == 5
    tests = {t["name"].split("::")[-1]: t for t in results["tests"]}
    assert len(tests) == 8 and "test_no_points" not in tests
    for case in ("test_add_many[1]", "test_add_many[2]", "test_add_many[3]"):
        assert tests[case]["score"] == tests[case]["max_score"] == 1.0
    assert tests["test_div"]["score"] == 0 and tests["test_div"]["output"] == "not implemented: run_div"
    assert tests["test_sub_wrong"]["score"] == 0 and "assert 8 == 2" in tests["test_sub_wrong"]["output"]
    assert {t["visibility"] for t in tests.values()} == {"visible"}
    table = results["output"].splitlines()
    assert table[0].split() == ["problem", "passed", "points"]
    assert table[1].split() == ["add", "4/4", "5.00/5"] and table[-1].split() == ["total", "4/8", "5.00/12"]
    assert results["output"] in output  # the same table is printed


def test_skips_points_table_and_results_json(tmp_path):
    project = toy_project(tmp_path)
    check_results(project, run_pytest(project, "--grade", "results.json"))


@pytest.mark.slow
def test_results_json_under_xdist(tmp_path):
    project = toy_project(tmp_path)
    check_results(project, run_pytest(project, "-n", "2", "--grade", "results.json"))


def test_junitxml_records_points_and_problem(tmp_path):
    project = toy_project(tmp_path)
    run_pytest(project, "--junitxml", "junit.xml")
    xml = (project / "junit.xml").read_text()
    assert '<property name="points" value="2.0"' in xml and '<property name="problem" value="add"' in xml


def test_adapters_file_of_another_repository(tmp_path):
    project = toy_project(tmp_path)
    student = tmp_path / "student"
    (student / "student_pkg").mkdir(parents=True)
    (student / "tests").mkdir()
    (student / "student_pkg" / "__init__.py").write_text(
        "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    return a * b\n"
    )
    (student / "tests" / "adapters.py").write_text(
        "from student_pkg import add, mul\n\n\ndef run_add(a, b):\n    return add(a, b)\n\n\n"
        "def run_mul(a, b):\n    return mul(a, b)\n"
    )
    result = run_pytest(project, "-k", "add or mul", "--adapters", f"toy={student / 'tests' / 'adapters.py'}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "5 passed" in output and "not implemented: get_multiplier" in output


def test_broken_adapters_stop_the_run_with_one_line(tmp_path):
    project = toy_project(tmp_path, adapters="import no_such_package_anywhere\n")
    result = run_pytest(project, "--grade", "results.json")
    assert result.returncode == 4, result.stdout + result.stderr
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(errors) == 1, errors
    assert "cannot import the toy adapters 'toy_adapters'" in errors[0]
    assert "no_such_package_anywhere" in errors[0]


def test_bad_adapters_option_is_one_line(tmp_path):
    project = toy_project(tmp_path)
    result = run_pytest(project, "--adapters", "nounit=x")
    assert result.returncode == 4 and "unknown unit 'nounit'" in result.stderr


def test_core_grader_may_only_call_course_adapters(tmp_path):
    tests = '''
    import pytest

    @pytest.mark.core
    @pytest.mark.points(1, problem="train")
    def test_core_uses_an_extension(adapters):
        adapters.run_train()

    @pytest.mark.extension
    def test_extension_may(adapters):
        assert adapters.run_train() == 1
    '''
    adapters = "def run_train():\n    return 1\n"
    project = toy_project(tmp_path, unit="basics", adapters=adapters, tests=tests)
    result = run_pytest(project)
    assert result.returncode == 1
    assert "1 failed, 1 passed" in result.stdout
    assert "grader bug: a core grader called run_train" in result.stdout


def test_core_grader_without_points_is_a_usage_error(tmp_path):
    tests = """
    import pytest

    @pytest.mark.core
    def test_no_points(adapters):
        assert adapters.run_add(1, 1) == 2
    """
    project = toy_project(tmp_path, tests=tests)
    result = run_pytest(project)
    assert result.returncode == 4 and "needs @pytest.mark.points" in result.stderr


def test_child_env_prepends_to_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    paths = child_env()["PYTHONPATH"].split(os.pathsep)
    assert paths[-1] == "/somewhere/else" and str(ROOT) in paths[:-1]
