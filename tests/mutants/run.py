"""Grade mutants in one process: ``python -m tests.mutants.run UNIT [--full] [--out FILE]``.

For each mutant of UNIT, runs pytest (``pytest.main``, in this process: torch and the test modules
are imported once, so a mutant costs about a second) on the graders in its ``KILLED_BY`` -- or with
``--full`` on the unit's whole core suite -- and records the score and the graders that lost points.
Prints (and writes with ``--out``) JSON: ``{mutant: {"score", "max_score", "failed": [...]}}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import pytest

from tests.mutants import catalogue, describe


def grade(unit: str, adapters: str, targets: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        args = [*targets, "-q", "-m", "core", "-p", "no:cacheprovider", "-p", "no:randomly"]
        args += ["--adapters", f"{unit}={adapters}", "--grade", str(results)]
        with contextlib.redirect_stdout(io.StringIO()) as log:
            code = pytest.main(args)
        if code not in (0, 1) or not results.exists():
            return {"error": f"pytest exit code {code}: {log.getvalue()[-2000:]}"}
        data = json.loads(results.read_text())
    failed = [t["name"] for t in data["tests"] if t["score"] < t["max_score"]]
    skipped = [t["name"] for t in data["tests"] if "not implemented" in t["output"]]
    return {"score": data["score"], "max_score": data["max_score"], "failed": failed, "skipped": skipped}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("unit")
    parser.add_argument("--full", action="store_true", help="run the unit's whole core suite per mutant")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    core = [f"tests/{args.unit}/core"]
    report = {"reference": grade(args.unit, f"tests.{args.unit}.adapters", core)}
    for unit, mutant in catalogue():
        if unit == args.unit:
            report[mutant] = grade(unit, mutant, core if args.full else describe(mutant)[1])
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
