"""MinHash dedup drops a document only if it duplicates one already kept (no clusters): with
A ~ B, B ~ C and A !~ C it keeps A and C."""

from __future__ import annotations

from pathlib import Path

from data.minhash import find_duplicate_clusters
from tests.data.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/data/core/test_minhash.py::test_chained_near_duplicates_form_one_cluster",
]


def _duplicates(texts, i, j, num_hashes, num_bands, ngrams, jaccard_threshold) -> bool:
    clusters, _, _ = find_duplicate_clusters(
        [texts[i], texts[j]], num_hashes, num_bands, ngrams, jaccard_threshold
    )
    return bool(clusters)


def run_minhash_deduplication(
    input_files, num_hashes, num_bands, ngrams, jaccard_threshold, output_directory
):
    paths = sorted((Path(p) for p in input_files), key=lambda p: p.name)
    texts = [p.read_text(encoding="utf-8") for p in paths]
    kept: list[int] = []
    for i in range(len(paths)):  # the mistake: pairwise against the kept ones, not clusters
        if not any(_duplicates(texts, i, k, num_hashes, num_bands, ngrams, jaccard_threshold) for k in kept):
            kept.append(i)
    Path(output_directory).mkdir(parents=True, exist_ok=True)
    for i in kept:
        (Path(output_directory) / paths[i].name).write_bytes(paths[i].read_bytes())
