"""Benchmark the data unit: MinHash signatures against datasketch, and the whole filtering pipeline.

1. MinHash signatures (128 permutations, 5-gram word shingles) of the same documents -- the
   built-in corpus of CPython docstrings, normalised once up front -- by
   ``data.minhash`` (vectorised: rolling shingle hashes + one numpy expression per batch), by
   datasketch with one ``MinHash.update`` per shingle, and by datasketch's ``MinHash.bulk``.
   The datasketch timings include making the shingle strings it hashes, as ours include hashing
   the shingles; a second bulk row leaves that out. Ratio = their CPU time / ours.
2. End-to-end ``data.pipeline.run_pipeline`` on generated WARC files (HTML pages made of corpus
   documents, with exact and near duplicates): documents per second per core of the filter stage
   and of the whole run.

    python scripts/bench_data.py                         # ~1-2 minutes on 2 cores
    python scripts/bench_data.py --docs 300 --pages 400  # quicker
"""

from __future__ import annotations

import argparse
import html
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from basics.cli import run_main


def corpus_documents(num_docs: int, min_words: int = 30) -> list[str]:
    """Docstrings of the built-in corpus with at least ``min_words`` words."""
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


def best_of(repeats: int, function) -> float:
    """Best CPU time of ``repeats`` calls: process time, not wall time, because the machine may
    be shared (everything timed here runs on one core)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def bench_minhash(num_docs: int, num_hashes: int, ngrams: int, repeats: int) -> list[tuple[str, float]]:
    from datasketch import MinHash

    from data.minhash import (
        batch_shingle_hashes,
        make_permutations,
        minhash_signatures,
        normalize_text,
        shingles,
    )

    texts = [normalize_text(t) for t in corpus_documents(num_docs)]
    a, b = make_permutations(num_hashes, seed=1)
    total_shingles = sum(len(shingles(t, ngrams)) for t in texts)
    print(
        f"MinHash: {len(texts)} documents, {total_shingles:,} distinct {ngrams}-gram shingles, {num_hashes} permutations"
    )

    def ours():
        minhash_signatures(batch_shingle_hashes(texts, ngrams), a, b)

    def shingle_bytes():
        return [[s.encode("utf-8") for s in shingles(t, ngrams)] for t in texts]

    def datasketch_update():
        for t in texts:
            m = MinHash(num_perm=num_hashes, seed=1)
            for s in shingles(t, ngrams):
                m.update(s.encode("utf-8"))

    def datasketch_bulk():
        MinHash.bulk(shingle_bytes(), num_perm=num_hashes, seed=1)

    prepared = shingle_bytes()
    rows = [
        ("ours (data.minhash, vectorised)", best_of(repeats, ours)),
        ("datasketch MinHash.update per shingle", best_of(max(1, repeats // 2), datasketch_update)),
        ("datasketch MinHash.bulk", best_of(repeats, datasketch_bulk)),
        (
            "datasketch MinHash.bulk (shingles given)",
            best_of(repeats, lambda: MinHash.bulk(prepared, num_perm=num_hashes, seed=1)),
        ),
    ]
    ours_seconds = rows[0][1]
    print(f"{'implementation':<40} {'CPU s':>8} {'docs/s':>9} {'ratio theirs/ours':>18}")
    for name, seconds in rows:
        print(f"{name:<40} {seconds:>8.3f} {len(texts) / seconds:>9,.0f} {seconds / ours_seconds:>17.1f}x")
    return rows


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
        f"\nPipeline: {report.documents_in} pages in {num_shards} WARC shards, {num_workers} worker processes (default filters)"
    )
    print(f"{'stage':<32} {'docs':>7} {'seconds':>8} {'docs/s':>8} {'docs/s per core':>16}")
    print(
        f"{'filter (CPU s, shards summed)':<32} {report.documents_processed:>7} {report.shard_seconds:>8.2f} "
        f"{report.documents_processed / report.shard_seconds:>8.1f} {report.docs_per_second_per_core:>16.1f}"
    )
    print(
        f"{'whole run (wall)':<32} {report.documents_in:>7} {report.seconds:>8.2f} "
        f"{report.documents_in / report.seconds:>8.1f} {report.documents_in / report.seconds / cores:>16.1f}"
    )
    print(f"{'dedup (stage 2, driver)':<32} {report.documents_in:>7} {report.dedup_seconds:>8.2f}")
    print("CPU seconds per filter: " + ", ".join(f"{k} {v:.2f}" for k, v in report.filter_seconds.items()))
    print(f"kept {report.documents_out} of {report.documents_in}; balanced: {report.balanced}")
    for name, reasons in report.dropped.items():
        print(f"  dropped by {name}: {reasons}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--docs", type=int, default=1000, help="documents for the MinHash benchmark (default: 1000)"
    )
    parser.add_argument("--num-hashes", type=int, default=128, help="MinHash permutations (default: 128)")
    parser.add_argument("--ngrams", type=int, default=5, help="word n-gram shingle size (default: 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats, best kept (default: 3)")
    parser.add_argument(
        "--pages", type=int, default=600, help="pages for the pipeline benchmark; 0 skips it (default: 600)"
    )
    parser.add_argument(
        "--shards", type=int, default=4, help="WARC shards for the pipeline benchmark (default: 4)"
    )
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker processes (default: 2)")
    args = parser.parse_args(argv)
    import datasketch

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}, "
        f"numpy {np.__version__}, datasketch {datasketch.__version__}\n"
    )
    bench_minhash(args.docs, args.num_hashes, args.ngrams, args.repeats)
    if args.pages:
        bench_pipeline(args.pages, args.shards, args.workers)


if __name__ == "__main__":
    run_main(main)
