"""Fit scaling laws to IsoFLOPs runs: N_opt(C), D_opt(C) and the Chinchilla parametric law.

Reads the course's JSON interchange file (a list of {"parameters", "compute_budget",
"final_loss"}), prints the IsoFLOPs power laws with bootstrap intervals and their predictions, the
parametric fit L = E + A/N^alpha + B/D^beta beside them, and saves three plots::

    python scripts/fit_isoflops.py scaling/isoflops_example.json
    python scripts/fit_isoflops.py runs.json --method parabola --predict 1e22 1e23 1e24 --out-dir plots/
    python scripts/fit_isoflops.py runs.json --no-chinchilla --bootstrap 1000

About 20 s on 2 cores for the 81-run example (most of it the Chinchilla bootstrap).
"""

from __future__ import annotations

import argparse
import sys

from basics.cli import (
    ArgumentParser,
    input_file,
    output_dir,
    positive_float,
    positive_int,
    probability,
    run_main,
)
from scaling.chinchilla import bootstrap_chinchilla, format_chinchilla_report
from scaling.isoflops import (
    bootstrap_isoflops,
    edge_optima,
    fit_isoflops,
    format_isoflops_report,
    load_runs,
    plot_isoflops,
)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=input_file, help="JSON list of {parameters, compute_budget, final_loss}")
    parser.add_argument(
        "--method",
        choices=["minimum", "parabola"],
        default="minimum",
        help="optimum per budget: lowest-loss run, or vertex of a parabola in log N (default: minimum)",
    )
    parser.add_argument(
        "--predict", type=positive_float, nargs="+", default=[1e23, 1e24], help="budgets to predict at"
    )
    parser.add_argument(
        "--bootstrap", type=positive_int, default=500, help="IsoFLOPs bootstrap resamples (default: 500)"
    )
    parser.add_argument(
        "--chinchilla-bootstrap", type=positive_int, default=50, help="parametric-fit resamples (default: 50)"
    )
    parser.add_argument("--level", type=probability, default=0.9, help="interval coverage (default: 0.9)")
    parser.add_argument(
        "--chinchilla",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also fit the parametric law (default: on)",
    )
    parser.add_argument(
        "--out-dir",
        type=output_dir,
        default="runs/isoflops_fit",
        help="where plots go (default: runs/isoflops_fit)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)

    try:
        runs = load_runs(args.runs)
        fit = fit_isoflops(runs, args.method)
        boot = bootstrap_isoflops(runs, args.predict, args.bootstrap, args.level, args.method, args.seed)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    budgets = sorted({r.compute_budget for r in runs})
    print(f"{len(runs)} runs at {len(budgets)} budgets from {budgets[0]:.3g} to {budgets[-1]:.3g} FLOPs\n")
    print(format_isoflops_report(fit, boot))
    for budget in edge_optima(runs):
        print(f"warning: at C = {budget:.3g} the lowest loss is at the edge of the sizes tried")
    if args.chinchilla:
        n = [r.parameters for r in runs]
        d = [r.tokens for r in runs]
        losses = [r.final_loss for r in runs]
        chinchilla = bootstrap_chinchilla(n, d, losses, args.chinchilla_bootstrap, args.level, args.seed)
        print()
        print(format_chinchilla_report(chinchilla, args.predict))
        print(
            f"\nexponent a of N_opt ~ C^a: IsoFLOPs {fit.parameters_law.exponent:.4f}, "
            f"parametric {chinchilla.fit.parameters_exponent:.4f}"
        )
    paths = plot_isoflops(runs, fit, args.out_dir, extrapolate_to=max(args.predict))
    print("\nplots:")
    for path in paths:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    run_main(main)
