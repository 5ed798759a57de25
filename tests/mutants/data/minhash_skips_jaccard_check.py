"""MinHash dedup treats every LSH candidate pair as a duplicate (no Jaccard check)."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_minhash.py::test_candidates_below_threshold_are_not_duplicates",
]


_dedup = run_minhash_deduplication  # noqa: F405


def run_minhash_deduplication(input_files, num_hashes, num_bands, ngrams, jaccard_threshold, output_directory):
    return _dedup(input_files, num_hashes, num_bands, ngrams, 0.0, output_directory)  # the mistake
