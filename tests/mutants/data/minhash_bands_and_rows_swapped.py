"""MinHash LSH uses num_bands as the rows per band (num_hashes / num_bands bands): 4 bands of 32
rows instead of 32 bands of 4, so near-duplicates are almost never candidates."""

from __future__ import annotations

from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_minhash.py::test_many_documents_only_duplicates_removed",
]

_dedup = run_minhash_deduplication  # noqa: F405


def run_minhash_deduplication(
    input_files, num_hashes, num_bands, ngrams, jaccard_threshold, output_directory
):
    bands = num_hashes // num_bands  # the mistake: the number of rows taken as the number of bands
    return _dedup(input_files, num_hashes, bands, ngrams, jaccard_threshold, output_directory)
