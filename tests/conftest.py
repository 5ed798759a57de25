"""Grader plumbing shared by every unit's tests.

Each unit's tests reach the implementation only through that unit's *adapters* module
(``tests/<unit>/adapters.py`` by default): small functions such as ``run_train_bpe(...)`` that
forward to our code. Tests receive it through the ``adapters`` fixture, so an instructor can grade
another implementation without touching the tests::

    pytest tests/basics --adapters basics=student_pkg.adapters

or by replacing ``tests/basics/adapters.py``. The option may be repeated, once per unit.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

# Without a GPU the Triton kernels run in the Triton interpreter. TRITON_INTERPRET must be set
# before any kernel is decorated, i.e. before the first test module of any unit imports one, so it
# is set here, when the root conftest is imported (a value already in the environment is kept).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

TESTS_DIR = Path(__file__).resolve().parent
UNITS = ("basics", "systems", "scaling", "data", "alignment")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--adapters",
        action="append",
        default=[],
        metavar="UNIT=MODULE",
        help="grade another implementation: import UNIT's adapters from MODULE (repeatable), "
        "e.g. --adapters basics=student_pkg.adapters",
    )


def parse_adapter_overrides(values: list[str]) -> dict[str, str]:
    """``["basics=pkg.mod"]`` -> ``{"basics": "pkg.mod"}``, with a one-line error on bad input."""
    overrides = {}
    for value in values:
        unit, sep, module = value.partition("=")
        if not sep or not module:
            raise pytest.UsageError(f"--adapters expects UNIT=MODULE, got {value!r}")
        if unit not in UNITS:
            raise pytest.UsageError(f"--adapters: unknown unit {unit!r}; choose from {', '.join(UNITS)}")
        overrides[unit] = module
    return overrides


def load_adapters(config: pytest.Config, unit: str) -> ModuleType:
    overrides = parse_adapter_overrides(config.getoption("--adapters"))
    name = overrides.get(unit, f"tests.{unit}.adapters")
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise pytest.UsageError(f"cannot import adapters module {name!r} for unit {unit!r}: {error}") from error


def unit_of(path: Path) -> str:
    relative = Path(path).resolve().relative_to(TESTS_DIR)
    if not relative.parts or relative.parts[0] not in UNITS:
        raise ValueError(f"{path} is not inside a unit folder of {TESTS_DIR}")
    return relative.parts[0]


@pytest.fixture
def adapters(request: pytest.FixtureRequest) -> ModuleType:
    """The adapters module of the unit whose folder the requesting test lives in."""
    return load_adapters(request.config, unit_of(request.path))


def pytest_configure(config: pytest.Config) -> None:
    parse_adapter_overrides(config.getoption("--adapters"))  # fail fast on a malformed option
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        # Each xdist worker gets its share of the cores: torch's default of one thread per core in
        # every worker oversubscribes the machine and slows CPU training steps many times over.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
