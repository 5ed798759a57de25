"""Project structure: every unit grader is marked core xor extension, every core grader lives in
tests/<unit>/core/ (those folders become the student starters' tests) and everything there is core.
(That a core grader carries points is enforced by the grading plugin at collection time.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grading import child_env

pytestmark = pytest.mark.extension
ROOT = Path(__file__).resolve().parents[2]
UNITS = ["tests/basics", "tests/systems", "tests/scaling", "tests/data", "tests/alignment"]

# One collection of every unit in a child process (the graders' modules import torch, triton, ...):
# prints one JSON line per grader: its node id and which of the two markers it carries.
COLLECT = """
import json, sys
import pytest

class Markers:
    def pytest_collection_finish(self, session):
        for item in session.items:
            marks = [m for m in ("core", "extension") if item.get_closest_marker(m) is not None]
            print("MARKS", json.dumps([item.nodeid, marks]))

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[Markers()]))
"""


@pytest.fixture(scope="module")
def graders() -> dict[str, list[str]]:
    command = [sys.executable, "-c", COLLECT, *UNITS]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=child_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    lines = [json.loads(line[6:]) for line in done.stdout.splitlines() if line.startswith("MARKS ")]
    assert lines, done.stdout[-3000:]
    return dict(lines)


def test_every_grader_is_core_xor_extension(graders):
    unmarked = [nodeid for nodeid, marks in graders.items() if len(marks) != 1]
    assert unmarked == [], f"mark these core or extension (new features: extension): {unmarked[:20]}"


def test_core_graders_live_in_core_folders(graders):
    core = [nodeid for nodeid, marks in graders.items() if marks == ["core"]]
    assert core and all("/core/" in nodeid for nodeid in core), [n for n in core if "/core/" not in n]
    in_core_folders = [nodeid for nodeid, marks in graders.items() if "/core/" in nodeid]
    assert all(graders[nodeid] == ["core"] for nodeid in in_core_folders), [
        n for n in in_core_folders if graders[n] != ["core"]
    ]
