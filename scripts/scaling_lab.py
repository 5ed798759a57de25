"""The budgeted scaling lab: train real models against a FLOPs budget and predict far beyond it.

Six commands share one SQLite ledger (``--db-path``); every run is charged once and cached, so an
interrupted sweep resumes by running the same command again::

    python scripts/scaling_lab.py sweep      # IsoFLOPs sweep (3e10-1e12 FLOPs), fits with intervals, plots
    python scripts/scaling_lab.py predict    # the submission: N_opt, D_opt, loss at 100x the sweep (JSON)
    python scripts/scaling_lab.py check      # train at the submission's budget; where does the loss land?
    python scripts/scaling_lab.py query --d-model 64 --num-layers 2 --num-heads 4 \\
        --batch-size 16 --learning-rate 1e-2 --train-flops 1e11 --seed 0
    python scripts/scaling_lab.py status     # budget left and every finished run
    python scripts/scaling_lab.py flops --d-model 64 --num-layers 2 --num-heads 4 \\
        --batch-size 16 --learning-rate 1e-2 --train-flops 1e11   # where a request's FLOPs go

The default sweep (budgets 3e10, 1e11, 3e11 and 1e12 FLOPs of 6ND; 5 sizes placed around the
predicted optimum, 2 seeds each; per-size learning rate and batch size: scaling/sweep.py) trains 40
models on the built-in corpus in two worker processes: 806 CPU-s, 7.5 minutes on an idle 2-core
machine (README). Plots, ``runs.json`` and ``submission.json`` go under ``<out-dir>/fits``. ``check``
at the default target (100x the top budget, 1e14 FLOPs) trains one model of about half a million
parameters for about two thousand steps: 40 minutes on an idle 2-core CPU (``--num-threads 2``). It shows a progress bar and saves
its state every minute (``--checkpoint-seconds``) under ``<out-dir>/checkpoints``: stopped, it
resumes where it was when the same command is run again (and the ledger does not charge it twice).
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
from dataclasses import asdict
from pathlib import Path

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    input_file,
    output_dir,
    output_file,
    positive_float,
    positive_int,
    probability,
    run_main,
)
from basics.files import atomic_write
from scaling.flops import format_flops_table
from scaling.lab import LabConfig, TrainingRunner, model_config_for, plan_run, query
from scaling.ledger import LabRequest, LabResult, Ledger
from scaling.prediction import (
    SweepPoint,
    aggregate_seeds,
    bootstrap_sweep,
    format_sweep_report,
    grade_submission,
    holdout_check,
    make_submission,
    plot_sweep,
)
from scaling.sweep import SweepConfig, check_request, run_sweep

HEADER = (
    f"{'budget C':>9} {'d_model':>7} {'layers':>6} {'heads':>5} {'seed':>4} {'N':>9} {'batch':>5} {'lr':>7} "
    f"{'steps':>6} {'tokens':>10} {'train':>7} {'val':>7} {'seconds':>8} {'charged':>9}"
)


def row(r: LabResult) -> str:
    q = r.request
    charged = "cached" if r.cached else f"{r.charged:.3g}"
    return (
        f"{q.train_flops:>9.3g} {q.d_model:>7} {q.num_layers:>6} {q.num_heads:>5} {q.seed:>4} {r.parameters:>9,} "
        f"{q.batch_size:>5} {q.learning_rate:>7.4f} {r.steps:>6} {r.tokens:>10,} {r.train_loss:>7.4f} "
        f"{r.val_loss:>7.4f} {r.seconds:>8.1f} {charged:>9}"
    )


def sweep_points(results: list[LabResult], sweep: SweepConfig) -> list[SweepPoint]:
    """The sweep's finished runs (its budgets and seeds; diverged runs reported and left out) by point."""
    budgets = {float(b) for b in sweep.budgets}
    chosen = [r for r in results if r.request.train_flops in budgets and r.request.seed < sweep.seeds]
    for r in chosen:
        if not math.isfinite(r.val_loss):
            print(f"left out of the fits (loss not finite, the run diverged): {r.request}")
    records = [
        (r.request.train_flops, r.parameters, r.tokens, r.val_loss)
        for r in chosen
        if math.isfinite(r.val_loss)
    ]
    return aggregate_seeds(records)


def print_points(points: list[SweepPoint]) -> None:
    print(f"\n{'budget C':>9} {'N':>9} {'D':>11} {'seeds':>5} {'mean loss':>9} {'spread':>7}  losses")
    for p in points:
        losses = " ".join(f"{x:.4f}" for x in p.losses)
        print(
            f"{p.compute_budget:>9.3g} {p.parameters:>9,.0f} {p.tokens:>11,.0f} {len(p.losses):>5} "
            f"{p.mean:>9.4f} {p.spread:>7.4f}  {losses}"
        )


def fit_and_report(points: list[SweepPoint], sweep: SweepConfig, out_dir: Path, args) -> dict:
    """Bootstrap the fits, print the report, save the plots; returns the submission."""
    target = args.target_budget or 100 * max(sweep.budgets)
    boot = bootstrap_sweep(points, target, args.bootstrap, args.level)
    holdout = holdout_check(points, target, args.bootstrap, args.level)
    print("\n" + format_sweep_report(boot, holdout))
    for budget, optimum in zip(sorted(boot.optima), boot.fit.isoflops.points):
        sizes = [p.parameters for p in points if p.compute_budget == budget]
        if not min(sizes) < optimum.parameters < max(sizes):
            print(f"warning: at C = {budget:.3g} the optimum is at the edge of the sizes tried")
    print("\nplots:")
    for path in plot_sweep(points, boot, out_dir, holdout):
        print(f"  {path}")
    submission = make_submission(boot, holdout)
    submission["sweep"] = asdict(sweep)
    return submission


def write_json(data, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=2) + "\n")
    return path


def command_sweep(args, lab: LabConfig, ledger: Ledger) -> int:
    sweep = config_from_arguments(SweepConfig, args)
    print(f"ledger {ledger.path}: remaining {ledger.remaining():.4g} of {ledger.total_budget:.4g} FLOPs")
    print(f"settings: {json.dumps(asdict(sweep))}")
    print(HEADER)
    results = []
    warn = lambda message: print(f"warning: {message}", flush=True)  # noqa: E731
    for result in run_sweep(sweep, ledger, lab, on_warning=warn):
        results.append(result)
        print(row(result), flush=True)
    print(
        f"\nspent {ledger.spent():.4g} of {ledger.total_budget:.4g} FLOPs; "
        f"exact matmul FLOPs of these runs {sum(r.exact_flops for r in results):.4g}"
    )
    points = sweep_points(results, sweep)
    print_points(points)
    out_dir = Path(lab.out_dir) / "fits"
    runs = [
        {"parameters": p.parameters, "compute_budget": p.compute_budget, "final_loss": p.mean} for p in points
    ]
    print(f"\nruns (interchange JSON, seed means): {write_json(runs, out_dir / 'runs.json')}")
    submission = fit_and_report(points, sweep, out_dir, args)
    print(f"submission: {write_json(submission, out_dir / 'submission.json')}")
    return 0 if all(math.isfinite(r.val_loss) for r in results) else 1


def command_predict(args, lab: LabConfig, ledger: Ledger) -> int:
    sweep = config_from_arguments(SweepConfig, args)
    points = sweep_points(ledger.results(), sweep)
    if not points:
        raise ValueError(
            f"ledger {ledger.path} holds no finished runs of the sweep's budgets; run `sweep` first"
        )
    print_points(points)
    submission = fit_and_report(points, sweep, Path(lab.out_dir) / "fits", args)
    path = Path(args.submission or Path(lab.out_dir) / "fits" / "submission.json")
    print(f"submission: {write_json(submission, path)}")
    return 0


def command_check(args, lab: LabConfig, ledger: Ledger) -> int:
    """Train the shape nearest the submission's N_opt at its budget (the sweep's rules for learning
    rate and batch size) and say where the loss and size fall in the predicted intervals."""
    path = Path(args.submission or Path(lab.out_dir) / "fits" / "submission.json")
    if not path.is_file():
        raise FileNotFoundError(f"no submission at {path}; run `predict` first")
    submission = json.loads(path.read_text())
    sweep = SweepConfig(**{k: tuple(v) if k == "budgets" else v for k, v in submission["sweep"].items()})
    target = float(submission["target_budget"])
    request = check_request(float(submission["parameters"]["estimate"]), target, sweep, lab, args.seed)
    print(f"check: training {request} ({plan_run(request, lab).steps} steps)", flush=True)
    result = query(request, ledger, lab, TrainingRunner(lab, progress=True))
    print(HEADER)
    print(row(result))
    grade = grade_submission(submission, result.val_loss, result.parameters)
    print(f"predicted loss {submission['loss']}; measured {result.val_loss:.4f}: {grade['loss']}")
    for name, what in (("frontier_loss", "the compute frontier's"), ("law_loss", "the loss law's")):
        if name in grade:
            print(f"  {what} own interval {submission[name]}: {grade[name]}")
    print(
        f"predicted N_opt {submission['parameters']}; trained N = {result.parameters:,}: {grade['parameters']}"
    )
    return 0 if grade["inside"] else 1


def open_ledger(path: str | Path, total_budget: float | None = None) -> Ledger:
    """The ledger at ``path``; a file that is not one is an error naming it."""
    try:
        return Ledger(path, total_budget)
    except sqlite3.DatabaseError as error:
        raise ValueError(f"--db-path {path}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    lab_types = {"db_path": output_file, "out_dir": output_dir}
    for name, text in (
        ("sweep", "IsoFLOPs sweep, fits with intervals, plots, submission"),
        ("predict", "fit the ledger's sweep runs and write the submission (JSON)"),
    ):
        sub = commands.add_parser(name, help=text)
        add_config_arguments(sub, LabConfig, types=lab_types)
        add_config_arguments(sub, SweepConfig)
        sub.add_argument(
            "--bootstrap", type=positive_int, default=200, help="bootstrap resamples (default: 200)"
        )
        sub.add_argument("--level", type=probability, default=0.9, help="interval level (default: 0.9)")
        sub.add_argument(
            "--target-budget",
            type=positive_float,
            default=None,
            help="predict here (default: 100x the top budget)",
        )
        sub.add_argument(
            "--submission",
            type=output_file,
            default=None,
            help="where predict writes (default: <out-dir>/fits/submission.json)",
        )
    check = commands.add_parser("check", help="train at the submission's budget and grade the prediction")
    add_config_arguments(check, LabConfig, types=lab_types)
    check.add_argument(
        "--submission", type=input_file, default=None, help="default: <out-dir>/fits/submission.json"
    )
    check.add_argument("--seed", type=int, default=0, help="seed of the check run (default: 0)")
    one = commands.add_parser("query", help="submit one request")
    add_config_arguments(one, LabConfig, types=lab_types)
    add_config_arguments(one, LabRequest)
    flops = commands.add_parser(
        "flops", help="FLOPs table of one request at the lab's vocabulary and context"
    )
    add_config_arguments(flops, LabConfig, types=lab_types)
    add_config_arguments(flops, LabRequest)
    status = commands.add_parser("status", help="budget and finished runs")
    status.add_argument(
        "--db-path",
        type=input_file,
        default=LabConfig.db_path,
        help=f"the ledger (default: {LabConfig.db_path})",
    )
    args = parser.parse_args(argv)

    if args.command == "status":
        ledger = open_ledger(args.db_path)
        print(
            f"ledger {ledger.path}: spent {ledger.spent():.4g} of {ledger.total_budget:.4g} FLOPs, "
            f"remaining {ledger.remaining():.4g}"
        )
        print(HEADER)
        for result in ledger.results():
            print(row(result))
        return 0
    lab = config_from_arguments(LabConfig, args)
    if args.command == "flops":
        request = config_from_arguments(LabRequest, args)
        plan = plan_run(request, lab)
        print(format_flops_table(model_config_for(request, lab), plan.tokens))
        print(f"this request: {plan.steps} steps, D = {plan.tokens:,} tokens")
        return 0
    if args.command == "query":  # the request is checked before the ledger is opened (or created)
        request = config_from_arguments(LabRequest, args)
        plan_run(request, lab)
    elif args.command in ("sweep", "predict"):
        config_from_arguments(SweepConfig, args)  # checked before the ledger is opened (or created)
    if args.command in ("predict", "check") and not Path(lab.db_path).is_file():  # they only read it
        raise FileNotFoundError(f"--db-path {lab.db_path}: no ledger there; run `sweep` first")
    ledger = open_ledger(lab.db_path, lab.total_budget)
    if args.command == "query":
        result = query(request, ledger, lab, TrainingRunner(lab, progress=True))
        print(HEADER)
        print(row(result))
        print(json.dumps({"train_loss": result.train_loss, "val_loss": result.val_loss}))
        return 0
    handler = {"sweep": command_sweep, "predict": command_predict, "check": command_check}[args.command]
    return handler(args, lab, ledger)


if __name__ == "__main__":
    run_main(main)
