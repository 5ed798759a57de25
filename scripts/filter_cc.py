"""Turn a directory of Common Crawl WARC/WET files into filtered, deduplicated (tokenized) shards.

Runs data.pipeline.run_pipeline -- extract, language ID, Gopher rules, harmful-content and quality
filters, PII masking, exact line and MinHash dedup, optional tokenization -- and prints how many
documents each filter dropped and why::

    python scripts/filter_cc.py CC_DIR OUT_DIR                           # local processes
    python scripts/filter_cc.py CC_DIR OUT_DIR --executor ray            # the same shard tasks on Ray
    python scripts/filter_cc.py CC_DIR OUT_DIR --languages en de --no-harmful --quality
    python scripts/filter_cc.py CC_DIR OUT_DIR --tokenizer-dir runs/tok    # + tokens/ (vocab.json, merges.txt)
    python scripts/train.py --data OUT_DIR/tokens --tokenizer-dir runs/tok  # train on the result

OUT_DIR gets filtered/ (per-shard kept documents and counts; a re-run skips finished shards and
redoes those whose input file changed), text/ (final documents, JSON lines), tokens/ (token shards
with sidecars, with a tokenizer) and report.json. Exits with status 1 if any shard failed. Run with
--help for every flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    input_dir,
    input_file,
    output_dir,
    run_main,
)
from data.pipeline import PipelineConfig, PipelineReport, Tokenization, find_input_files, run_pipeline


def load_tokenization(directory: Path) -> Tokenization:
    """The pipeline's view of the unit-1 tokenizer in ``directory`` (vocab.json, merges.txt)."""
    from basics.data import ENDOFTEXT, tokenizer_fingerprint
    from basics.tokenizer import Tokenizer

    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    for path in (vocab, merges):
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file not found: {path}")
    tokenizer = Tokenizer.from_files(vocab, merges, special_tokens=[ENDOFTEXT])
    files = (str(vocab.resolve()), str(merges.resolve()))
    return Tokenization.of(
        tokenizer, tokenizer.special_ids[ENDOFTEXT], tokenizer_fingerprint(tokenizer), files
    )


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
        f"shards {report.shards} (resumed {report.shards_resumed}, rebuilt {len(report.rebuilt)}, "
        f"failed {len(report.failed)})  wall {report.seconds:.1f} s  "
        f"stage-1 {report.docs_per_second_per_core:,.0f} docs/s per core"
    )
    if report.rebuilt:
        rows.append("rebuilt (input file changed since the last run): " + ", ".join(report.rebuilt))
    rows += format_throughput(report)
    for shard, error in report.failed.items():
        rows.append(f"FAILED {shard}: {error}")
    return "\n".join(rows)


def format_throughput(report: PipelineReport) -> list[str]:
    """Documents per CPU second of each stage-1 filter (one core), and the stage-2/3 wall times."""
    if not report.filter_seconds:
        return []
    rows = [f"{'stage':<14} {'documents':>10} {'CPU s':>8} {'docs/s per core':>16}"]
    for name, seconds in report.filter_seconds.items():
        docs = report.filter_documents.get(name, 0)
        rate = f"{docs / seconds:,.0f}" if seconds > 0 else "-"
        rows.append(f"{name:<14} {docs:>10,} {seconds:>8.2f} {rate:>16}")
    rows.append(
        f"dedup (driver) wall {report.dedup_seconds:.2f} s; tokenize wall {report.tokenize_seconds:.2f} s"
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input_dir", type=input_dir, help="directory of .warc/.wet files (gzip or not)")
    parser.add_argument("out_dir", type=output_dir, help="output directory (created; re-runs resume)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument(
        "--tokenizer-dir",
        type=input_dir,
        help="unit-1 tokenizer (vocab.json, merges.txt): also write tokens/",
    )
    models = ("language_model", "nsfw_model", "toxic_model", "quality_model")
    add_config_arguments(parser, PipelineConfig, types=dict.fromkeys(models, input_file))
    args = parser.parse_args(argv)
    config = config_from_arguments(PipelineConfig, args)
    tokenization = load_tokenization(args.tokenizer_dir) if args.tokenizer_dir else None
    report = run_pipeline(
        find_input_files(args.input_dir), args.out_dir, config, tokenization, progress=not args.no_progress
    )
    print(format_report(report))
    summary = dataclasses.asdict(report) | {"balanced": report.balanced, "config": dataclasses.asdict(config)}
    summary["docs_per_second_per_core"] = report.docs_per_second_per_core
    (args.out_dir / "report.json").write_text(json.dumps(summary, indent=1))
    return 1 if report.failed else 0


if __name__ == "__main__":
    run_main(main)
