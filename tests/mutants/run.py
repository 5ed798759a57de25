"""Grade mutants in one process: ``python -m tests.mutants.run UNIT [--full] [--out FILE]``.

For each mutant of UNIT, runs pytest (``pytest.main``, in this process: torch and the test modules
are imported once, so a mutant costs about a second) on the graders in its ``KILLED_BY`` up to the
first that loses points -- or with ``--full`` on the unit's whole core suite -- and records the score
and the graders that lost points.
Prints (and writes with ``--out``) JSON: ``{mutant: {"score", "max_score", "failed": [...]}}``; with
``--matrix`` prints instead a table of the core graders, their points and how many mutants each kills
(``--full --matrix``: the kill matrix of the closing note).
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


def grade(unit: str, adapters: str, targets: list[str], first_loss: bool = False) -> dict:
    """Score ``adapters`` on the core graders ``targets``; ``first_loss``: stop at the first grader
    that loses points (enough to show a mutant is caught)."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        args = [*targets, "-q", "-m", "core", "-p", "no:cacheprovider", "-p", "no:randomly"]
        args += ["-x"] if first_loss else []
        args += ["--adapters", f"{unit}={adapters}", "--grade", str(results)]
        with contextlib.redirect_stdout(io.StringIO()) as log:
            code = pytest.main(args)
        if code not in (0, 1) or not results.exists():
            return {"error": f"pytest exit code {code}: {log.getvalue()[-2000:]}"}
        data = json.loads(results.read_text())
    failed = [t["name"] for t in data["tests"] if t["score"] < t["max_score"]]
    skipped = [t["name"] for t in data["tests"] if "not implemented" in t["output"]]
    points = {t["name"]: t["max_score"] for t in data["tests"]}
    return {
        "score": data["score"],
        "max_score": data["max_score"],
        "failed": failed,
        "skipped": skipped,
        "points": points,
    }


def grader(node_id: str) -> str:
    """The grader function of a pytest node id (the parametrized cases of one function are one grader)."""
    return node_id.split("[")[0].split("::")[-1]


def matrix(report: dict) -> str:
    """Markdown: each core grader of the full run, its points, and how many mutants it kills."""
    points: dict[str, float] = {}
    for node, value in report["reference"].get("points", {}).items():
        points[grader(node)] = points.get(grader(node), 0) + value
    kills = {name: 0 for name in points}
    mutants = [(name, result) for name, result in report.items() if name != "reference"]
    for _, result in mutants:
        for name in {grader(node) for node in result.get("failed", [])}:
            kills[name] = kills.get(name, 0) + 1
    lines = ["| core grader | points | mutants killed |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {round(points.get(name, 0), 2):g} | {kills[name]} |" for name in sorted(kills)]
    lines.append(
        f"| **{len(points)} graders** | **{round(sum(points.values()), 2):g}** | **{len(mutants)} mutants** |"
    )
    unkilled = [name.rsplit(".", 1)[-1] for name, result in mutants if not result.get("failed")]
    idle = [name for name, count in kills.items() if count == 0]
    lines.append(
        f"\nkilled by no grader: {', '.join(unkilled) or 'none'}; graders killing none: {', '.join(idle) or 'none'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("unit")
    parser.add_argument("--full", action="store_true", help="run the unit's whole core suite per mutant")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--matrix", action="store_true", help="print a grader x kills table, not the JSON")
    args = parser.parse_args(argv)
    core = [f"tests/{args.unit}/core"]
    report = {"reference": grade(args.unit, f"tests.{args.unit}.adapters", core)}
    for unit, mutant in catalogue():
        if unit == args.unit:
            targets = core if args.full else describe(mutant)[1]
            report[mutant] = grade(unit, mutant, targets, first_loss=not args.full)
            report[mutant].pop("points", None)  # the reference's are the grader's points
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    sys.stdout.write((matrix(report) if args.matrix else text) + "\n")


if __name__ == "__main__":
    main()
