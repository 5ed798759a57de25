"""Grader plumbing shared by every unit's tests.

How to write a grader now (read this before adding a test):

* Reach the implementation only through the unit's ``adapters`` fixture (``tests/<unit>/adapters.py``
  by default; ``--adapters basics=/path/to/repo/tests/adapters.py`` grades someone else's code).
  Never import ``basics``/``systems``/... in a grader, except project-structure checks.
* Mark every test ``core`` or ``extension`` (a module-level ``pytestmark`` is fine):
  - ``core``: what the course handout asks for, called ONLY through the course's adapter functions
    (``tests/grading.py: RELEASES``, names and parameters per release), passing every one of the
    course's parameters (a student's adapter need not have our defaults). Carries
    ``@pytest.mark.points(n, problem="train_bpe")``. It builds its own inputs and weights (course
    state-dict names), compares only what the handout fixes (merges, vocab *values*, logits within
    tolerance), accepts any id layout / RNG / error type where the handout leaves them
    open (``grading.raises_any()`` where it just says "raise"). Core graders live in
    ``tests/<unit>/core/`` -- those files become the student starter's tests.
  - ``extension``: our extras (beyond the handout). Add the adapter function you need to
    ``tests/<unit>/adapters.py`` (an "extension adapter"); no points.
* A missing adapter, or one raising NotImplementedError, skips the grader as "not implemented".
* A subprocess grader passes ``adapters.__name__`` to the child, which calls
  ``tests.grading.import_adapters(name)``; its environment is ``tests.grading.child_env()``
  (PYTHONPATH prepended, never replaced).
* ``pytest tests/basics -m core --grade results.json`` prints the per-problem score table and
  writes Gradescope's results.json.
"""

from __future__ import annotations

import os

import torch

pytest_plugins = ["tests.grading"]

# Without a GPU the Triton kernels run in the Triton interpreter. TRITON_INTERPRET must be set
# before any kernel is decorated, i.e. before the first test module of any unit imports one, so it
# is set here, when the root conftest is imported (a value already in the environment is kept).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_configure(config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        # Each xdist worker gets its share of the cores: torch's default of one thread per core in
        # every worker oversubscribes the machine and slows CPU training steps many times over.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    import pytest

    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu"):  # not `in item.keywords`: a folder named gpu matches
            item.add_marker(skip_gpu)
