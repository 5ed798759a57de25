"""Benchmark the data unit: the MinHash path against datasketch, and the filtering pipeline.

1. MinHash signatures (128 permutations, 5-gram word shingles) of real text -- the built-in corpus
   of CPython docstrings -- on short documents (paragraphs of ~60 words) and long ones (~630 words).
   Ours is the *whole path* from raw text: normalise -> hash every shingle -> signatures
   (``data.shingles.hash_shingles`` + ``data.minhash.minhash_signatures``). datasketch's ``MinHash.bulk`` is timed
   twice: given the same normalised shingles ready-made (only its hashing and signatures are
   timed), and building its own shingles from the raw text (with our ``normalize_text``). Both
   ratios are theirs / ours.
2. End-to-end ``data.pipeline.run_pipeline`` on generated WARC files (HTML pages made of corpus
   documents, with exact and near duplicates): documents per second per core of each filter
   stage, and of the whole run.

All timings are CPU seconds of one process (``time.process_time``), best of ``--repeats`` runs,
ours and theirs interleaved, because the machine may be shared: read the ratios, not the seconds.

    python scripts/bench_data.py                         # ~1-2 minutes on 2 cores
    python scripts/bench_data.py --docs 500 --pages 200  # quicker
"""

from __future__ import annotations

import argparse
import html
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from basics.cli import ArgumentParser, non_negative_int, positive_int, run_main


def corpus_documents(num_docs: int, min_words: int = 30) -> list[str]:
    """Docstrings of the built-in corpus with at least ``min_words`` words (~630 words on average)."""
    from basics.corpus import ENDOFTEXT, build_corpus

    paths = build_corpus()
    docs = []
    for split in (paths.train, paths.validation):
        docs += [
            d.strip()
            for d in split.read_text(encoding="utf-8").split(ENDOFTEXT)
            if len(d.split()) >= min_words
        ]
    if len(docs) < num_docs:
        docs = (docs * (num_docs // max(len(docs), 1) + 1))[:num_docs]
    return docs[:num_docs]


def corpus_paragraphs(num_docs: int, min_words: int = 50, max_words: int = 150) -> list[str]:
    """Paragraphs (blank-line separated) of the corpus with ``min_words``..``max_words`` words."""
    paragraphs = [
        p.strip()
        for d in corpus_documents(10 * num_docs)
        for p in d.split("\n\n")
        if min_words <= len(p.split()) <= max_words
    ]
    return paragraphs[:num_docs]


def best_of(repeats: int, functions: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best CPU time of each function over ``repeats`` rounds; the functions take turns in every
    round, so a burst of load on a shared machine hits them all alike."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.process_time()
            function()
            best[name] = min(best[name], time.process_time() - start)
    return best


def bench_minhash(label: str, texts: list[str], num_hashes: int, ngrams: int, repeats: int) -> dict:
    from datasketch import MinHash

    from data.minhash import make_permutations, minhash_signatures
    from data.normalize import normalize_text
    from data.shingles import hash_shingles, shingles

    a, b = make_permutations(num_hashes, seed=1)
    prepared = [[s.encode("utf-8") for s in shingles(normalize_text(t), ngrams)] for t in texts]
    words = np.mean([len(normalize_text(t).split()) for t in texts])
    print(
        f"\nMinHash, {label}: {len(texts)} documents of {words:.0f} words on average, "
        f"{sum(map(len, prepared)):,} distinct {ngrams}-gram shingles, {num_hashes} permutations"
    )

    def own_shingles():
        return [[s.encode("utf-8") for s in shingles(normalize_text(t), ngrams)] for t in texts]

    seconds = best_of(
        repeats,
        {
            "ours": lambda: minhash_signatures(hash_shingles(texts, ngrams), a, b),
            "given": lambda: MinHash.bulk(prepared, num_perm=num_hashes, seed=1),
            "own": lambda: MinHash.bulk(own_shingles(), num_perm=num_hashes, seed=1),
        },
    )
    rows = [
        ("ours: raw text -> signatures (data.minhash)", seconds["ours"]),
        ("datasketch MinHash.bulk, shingles given", seconds["given"]),
        ("datasketch MinHash.bulk, builds its shingles", seconds["own"]),
    ]
    print(f"{'implementation':<46} {'CPU s':>8} {'docs/s':>9} {'theirs/ours':>12}")
    for name, value in rows:
        print(f"{name:<46} {value:>8.3f} {len(texts) / value:>9,.0f} {value / seconds['ours']:>11.1f}x")
    return {"given": seconds["given"] / seconds["ours"], "own": seconds["own"] / seconds["ours"]}


def write_bench_warc(path: Path, documents: list[str], start: int) -> None:
    """A plain WARC file with one HTML ``response`` record per document."""
    records = []
    for i, text in enumerate(documents):
        paragraphs = "\n".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p.strip())
        body = f"<html><head><title>Doc {start + i}</title></head><body>{paragraphs}</body></html>".encode()
        http = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        header = (
            "WARC/1.0\r\nWARC-Type: response\r\n"
            f"WARC-Target-URI: http://bench.example/{start + i}\r\n"
            "WARC-Date: 2024-01-01T00:00:00Z\r\n"
            f"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-{start + i:012d}>\r\n"
            "Content-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(http)}\r\n\r\n"
        ).encode()
        records.append(header + http + b"\r\n\r\n")
    path.write_bytes(b"".join(records))


def bench_pipeline(num_pages: int, num_shards: int, num_workers: int) -> None:
    from data.pipeline import PipelineConfig, find_input_files, run_pipeline

    rng = random.Random(0)
    docs = corpus_documents(num_pages)
    for i in rng.sample(range(len(docs)), len(docs) // 10):  # 10% near-duplicates of other pages
        words = docs[rng.randrange(len(docs))].split(" ")
        words[len(words) // 2] = "edited"
        docs[i] = " ".join(words)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        per_shard = -(-len(docs) // num_shards)
        for s in range(num_shards):
            write_bench_warc(
                inputs / f"bench-{s:03d}.warc", docs[s * per_shard : (s + 1) * per_shard], s * per_shard
            )
        config = PipelineConfig(num_workers=num_workers)
        report = run_pipeline(find_input_files(inputs), Path(tmp) / "out", config)
    cores = min(num_workers, num_shards)
    print(
        f"\nPipeline: {report.documents_in} pages in {num_shards} WARC shards, "
        f"{num_workers} worker processes (default filters)"
    )
    print(f"{'stage':<32} {'docs':>7} {'CPU s':>8} {'docs/s per core':>16}")
    for name, seconds in report.filter_seconds.items():
        docs = report.filter_documents.get(name, 0)
        print(f"{'filter: ' + name:<32} {docs:>7} {seconds:>8.2f} {docs / max(seconds, 1e-9):>16,.0f}")
    print(
        f"{'all filters (CPU, shards summed)':<32} {report.documents_processed:>7} "
        f"{report.shard_seconds:>8.2f} {report.docs_per_second_per_core:>16,.0f}"
    )
    print(f"{'loading models (CPU, per shard)':<32} {'':>7} {report.setup_seconds:>8.2f}")
    print(f"{'dedup (stage 2, driver, wall)':<32} {report.documents_in:>7} {report.dedup_seconds:>8.2f}")
    print(
        f"{'whole run (wall)':<32} {report.documents_in:>7} {report.seconds:>8.2f} "
        f"{report.documents_in / report.seconds / cores:>16,.0f}"
    )
    print(f"kept {report.documents_out} of {report.documents_in}; balanced: {report.balanced}")
    for name, reasons in report.dropped.items():
        print(f"  dropped by {name}: {reasons}")


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--docs", type=positive_int, default=1000, help="documents for the MinHash benchmark (default: 1000)"
    )
    parser.add_argument(
        "--num-hashes", type=positive_int, default=128, help="MinHash permutations (default: 128)"
    )
    parser.add_argument(
        "--ngrams", type=positive_int, default=5, help="word n-gram shingle size (default: 5)"
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=5, help="timing repeats, best kept (default: 5)"
    )
    parser.add_argument(
        "--pages",
        type=non_negative_int,
        default=600,
        help="pages for the pipeline benchmark; 0 skips it (default: 600)",
    )
    parser.add_argument(
        "--shards", type=positive_int, default=4, help="WARC shards for the pipeline benchmark (default: 4)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=2, help="pipeline worker processes (default: 2)"
    )
    args = parser.parse_args(argv)
    import datasketch

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}, "
        f"numpy {np.__version__}, datasketch {datasketch.__version__}\n"
    )
    bench_minhash("short", corpus_paragraphs(2 * args.docs), args.num_hashes, args.ngrams, args.repeats)
    bench_minhash("long", corpus_documents(args.docs), args.num_hashes, args.ngrams, args.repeats)
    if args.pages:
        bench_pipeline(args.pages, args.shards, args.workers)


if __name__ == "__main__":
    run_main(main)
