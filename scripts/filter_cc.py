"""Turn a directory of Common Crawl WARC/WET files into filtered, deduplicated (tokenized) shards.

Runs data.pipeline.run_pipeline -- extract, language ID, Gopher rules, harmful-content and quality
filters, PII masking, exact line and MinHash dedup, optional tokenization -- and prints how many
documents each filter dropped and why::

    python scripts/filter_cc.py CC_DIR OUT_DIR                           # local processes
    python scripts/filter_cc.py CC_DIR OUT_DIR --executor ray            # the same shard tasks on Ray
    python scripts/filter_cc.py CC_DIR OUT_DIR --languages en de --no-harmful --quality
    python scripts/filter_cc.py CC_DIR OUT_DIR --tokenizer-vocab tok/vocab.json --tokenizer-merges tok/merges.txt

OUT_DIR gets filtered/ (per-shard kept documents and counts; a re-run skips finished shards),
text/ (final documents, JSON lines), tokens/ (uint16 arrays, with a tokenizer) and report.json.
Exits with status 1 if any shard failed. Run with --help for every flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from basics.cli import add_config_arguments, config_from_arguments, run_main
from data.pipeline import PipelineConfig, PipelineReport, find_input_files, run_pipeline


def format_report(report: PipelineReport) -> str:
    """The per-filter table and the totals, as printed by this script."""
    total = max(report.documents_in, 1)
    rows = [f"{'filter':<14} {'reason':<36} {'documents':>10} {'% of in':>8}"]
    rows.append("-" * len(rows[0]))
    for name, reasons in report.dropped.items():
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            rows.append(f"{name:<14} {reason[:36]:<36} {count:>10,} {100 * count / total:>7.1f}%")
    rows.append("-" * len(rows[0]))
    rows.append(
        f"{'kept':<14} {'':<36} {report.documents_out:>10,} {100 * report.documents_out / total:>7.1f}%"
    )
    rows.append(f"{'in':<14} {'(kept + dropped)':<36} {report.documents_in:>10,} {'100.0%':>8}")
    rows.append("")
    for name, values in report.metrics.items():
        rows.append(f"{name}: " + ", ".join(f"{k} {v:,}" for k, v in values.items()))
    rows.append(f"bytes in {report.bytes_in:,}  out {report.bytes_out:,}  tokens {report.tokens:,}")
    rows.append(
        f"shards {report.shards} (resumed {report.shards_resumed}, failed {len(report.failed)})  "
        f"wall {report.seconds:.1f} s  stage-1 {report.docs_per_second_per_core:,.0f} docs/s per core"
    )
    if report.filter_seconds:
        rows.append(
            "stage-1 CPU seconds per filter: "
            + ", ".join(f"{name} {seconds:.2f}" for name, seconds in report.filter_seconds.items())
            + f"; stage-2 dedup {report.dedup_seconds:.2f} s"
        )
    for shard, error in report.failed.items():
        rows.append(f"FAILED {shard}: {error}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input_dir", type=Path, help="directory of .warc/.wet files (gzip or not)")
    parser.add_argument("out_dir", type=Path, help="output directory (created; re-runs resume)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_config_arguments(parser, PipelineConfig)
    args = parser.parse_args(argv)
    config = config_from_arguments(PipelineConfig, args)
    report = run_pipeline(
        find_input_files(args.input_dir), args.out_dir, config, progress=not args.no_progress
    )
    print(format_report(report))
    summary = dataclasses.asdict(report) | {"balanced": report.balanced, "config": dataclasses.asdict(config)}
    (args.out_dir / "report.json").write_text(json.dumps(summary, indent=1))
    return 1 if report.failed else 0


if __name__ == "__main__":
    run_main(main)
