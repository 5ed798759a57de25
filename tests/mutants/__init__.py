"""The mutation catalogue: realistic student mistakes, one per module, to show that the core graders bite.

Each module under ``tests/mutants/<unit>/`` is an adapters module: it re-exports the reference
adapters of its unit and replaces ONE function with a version holding one mistake a student could
plausibly make. Its docstring's first paragraph names the mistake (the README's catalogue lists it)
and ``KILLED_BY`` lists the core graders (pytest node ids or files) that must lose points on it.
``tests/meta/test_mutants.py`` runs exactly those graders against each mutant (``--adapters
UNIT=tests.mutants.UNIT.NAME --grade``) and requires a score below the maximum, and requires full
marks from the reference adapters.

``python -m tests.mutants.run UNIT --full --matrix`` runs every mutant against the unit's whole core
suite and prints each core grader, its points and how many mutants it kills (slow; the numbers in
the closing note come from it; every grader should kill at least one).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

UNITS = ("basics", "systems", "data", "alignment", "scaling")


def catalogue() -> list[tuple[str, str]]:
    """(unit, module name) of every mutant, in a stable order."""
    found = []
    for unit in UNITS:
        folder = Path(__file__).parent / unit
        if not folder.is_dir():
            continue
        for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda i: i.name):
            if not info.name.startswith("_"):
                found.append((unit, f"tests.mutants.{unit}.{info.name}"))
    return found


def describe(module_name: str) -> tuple[str, list[str]]:
    """(the first paragraph of the mutant's docstring, on one line; the graders that must kill it)."""
    module = importlib.import_module(module_name)
    paragraph = (module.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(paragraph.split()), list(module.KILLED_BY)
