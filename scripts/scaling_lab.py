"""The budgeted scaling lab: train real models against a FLOPs budget and fit scaling laws to them.

Four commands share one SQLite ledger (``--db-path``); every run is charged once and cached, so an
interrupted sweep resumes by running the same command again::

    python scripts/scaling_lab.py sweep                          # the demo: IsoFLOPs sweep, fits, plots
    python scripts/scaling_lab.py sweep --budgets 1e10 3e10 1e11 3e11 --total-budget 1e13
    python scripts/scaling_lab.py query --d-model 64 --num-layers 2 --num-heads 4 \\
        --batch-size 16 --learning-rate 3e-3 --train-flops 1e11
    python scripts/scaling_lab.py status                         # budget left and every finished run
    python scripts/scaling_lab.py flops --d-model 64 --num-layers 2 --num-heads 4 \\
        --batch-size 16 --learning-rate 1e-2 --train-flops 1e11   # where a request's FLOPs go

The default sweep (budgets 1e10, 3e10, 1e11 FLOPs of 6ND, 6 model sizes each, on the built-in corpus
with a 512-token BPE) trains 18 models in about 15 minutes on 2 busy CPU cores (one torch thread per
run); a first run also trains the tokenizer (seconds). Runs go under ``--out-dir``, plots and
``runs.json`` under ``<out-dir>/fits``.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    input_file,
    output_dir,
    output_file,
    positive_int,
    run_main,
)
from scaling.flops import format_flops_table
from scaling.lab import LabConfig, TrainingRunner, model_config_for, plan_run, query
from scaling.ledger import BudgetExceeded, LabRequest, LabResult, Ledger
from scaling.sweep import SweepConfig, isoflops_runs, run_sweep, sweep_requests

HEADER = (
    f"{'budget C':>9} {'d_model':>7} {'layers':>6} {'heads':>5} {'N':>9} {'steps':>6} {'tokens':>10} "
    f"{'train':>7} {'val':>7} {'seconds':>8} {'charged':>9}"
)


def row(r: LabResult) -> str:
    q = r.request
    charged = "cached" if r.cached else f"{r.charged:.3g}"
    return (
        f"{q.train_flops:>9.3g} {q.d_model:>7} {q.num_layers:>6} {q.num_heads:>5} {r.parameters:>9,} "
        f"{r.steps:>6} {r.tokens:>10,} {r.train_loss:>7.4f} {r.val_loss:>7.4f} {r.seconds:>8.1f} {charged:>9}"
    )


def fit_and_plot(results: list[LabResult], out_dir: Path, bootstrap: int) -> None:
    from scaling.chinchilla import bootstrap_chinchilla, format_chinchilla_report
    from scaling.isoflops import (
        bootstrap_isoflops,
        edge_optima,
        fit_isoflops,
        format_isoflops_report,
        plot_isoflops,
        save_runs,
    )

    runs, left_out = isoflops_runs(results)
    for r in left_out:
        print(f"left out of the fits (loss not finite, the run diverged): {r.request}")
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"\nruns (interchange JSON): {save_runs(runs, out_dir / 'runs.json')}")
    try:
        fit = fit_isoflops(runs, "parabola")
        boot = bootstrap_isoflops(runs, (1e13, 1e15, 1e23), bootstrap, method="parabola")
    except ValueError as error:
        print(f"cannot fit IsoFLOPs laws: {error}")
        return
    print("\n" + format_isoflops_report(fit, boot))
    for budget in edge_optima(runs):
        print(f"warning: at C = {budget:.3g} the lowest loss is at the edge of the sizes tried")
    try:
        finished = [r for r in results if math.isfinite(r.val_loss)]  # with the tokens each run really saw
        chinchilla = bootstrap_chinchilla(
            [r.parameters for r in finished],
            [r.tokens for r in finished],
            [r.val_loss for r in finished],
            num_samples=max(2, bootstrap // 10),
        )
        print("\n" + format_chinchilla_report(chinchilla, (1e13, 1e15, 1e23)))
    except ValueError as error:
        print(f"cannot fit the parametric law: {error}")
    print("\nplots:")
    for path in plot_isoflops(runs, fit, out_dir):
        print(f"  {path}")


def open_ledger(path: str | Path, total_budget: float | None = None) -> Ledger:
    """The ledger at ``path``; a file that is not one is an error naming it."""
    try:
        return Ledger(path, total_budget)
    except sqlite3.DatabaseError as error:
        raise ValueError(f"--db-path {path}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("sweep", help="IsoFLOPs sweep, then both fits and the plots")
    lab_types = {"db_path": output_file, "out_dir": output_dir}
    add_config_arguments(sweep, LabConfig, types=lab_types)
    add_config_arguments(sweep, SweepConfig)
    sweep.add_argument(
        "--bootstrap", type=positive_int, default=200, help="IsoFLOPs bootstrap resamples (default: 200)"
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="list the requests and their cost, train nothing"
    )
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
    else:
        sweep_config = config_from_arguments(SweepConfig, args)
    try:
        ledger = open_ledger(lab.db_path, lab.total_budget)
        if args.command == "query":
            result = query(request, ledger, lab)
            print(HEADER)
            print(row(result))
            print(json.dumps({"train_loss": result.train_loss, "val_loss": result.val_loss}))
            return 0
        requests = sweep_requests(sweep_config, lab)
        cost = sum(r.train_flops for r in requests)
        print(
            f"sweep: {len(requests)} runs, {cost:.4g} FLOPs if none is cached; "
            f"ledger {ledger.path}: remaining {ledger.remaining():.4g} of {ledger.total_budget:.4g}"
        )
        print(f"settings: {json.dumps(asdict(sweep_config))}")
        if args.dry_run:
            for r in requests:
                print(f"  {r}")
            return 0
        runner = TrainingRunner(lab)
        print(HEADER)
        results = []
        for result in run_sweep(requests, ledger, lab, runner):
            results.append(result)
            print(row(result), flush=True)
    except (BudgetExceeded, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"\nspent {ledger.spent():.4g} of {ledger.total_budget:.4g} FLOPs; "
        f"exact matmul FLOPs of these runs {sum(r.exact_flops for r in results):.4g}"
    )
    fit_and_plot(results, Path(lab.out_dir) / "fits", args.bootstrap)
    return 0 if all(math.isfinite(r.val_loss) for r in results) else 1


if __name__ == "__main__":
    run_main(main)
