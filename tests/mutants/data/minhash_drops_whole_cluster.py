"""MinHash dedup removes every document of a duplicate cluster instead of keeping one."""

from __future__ import annotations

from pathlib import Path

from data.minhash import find_duplicate_clusters
from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_minhash.py::test_keeps_one_of_two_near_identical_licences_and_the_dissimilar_doc",
    "tests/data/core/test_minhash.py::test_many_documents_only_duplicates_removed",
]


def run_minhash_deduplication(
    input_files, num_hashes, num_bands, ngrams, jaccard_threshold, output_directory
):
    paths = [Path(p) for p in input_files]
    texts = [p.read_text(encoding="utf-8") for p in paths]
    clusters, _, _ = find_duplicate_clusters(texts, num_hashes, num_bands, ngrams, jaccard_threshold)
    removed = {i for members in clusters for i in members}  # the mistake: no survivor per cluster
    Path(output_directory).mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        if i not in removed:
            (Path(output_directory) / path.name).write_bytes(path.read_bytes())
