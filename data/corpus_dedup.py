"""Corpus-wide deduplication: stage 2 of the pipeline, over the kept documents of every shard.

Handout section 2.8 ("Deduplication"), in three passes, each one counted like a filter:

1. ``exact_dedup``: documents with identical text (a 128-bit blake2b of it); one copy survives.
2. ``minhash_dedup``: near-duplicates by MinHash + LSH with a verified Jaccard (``data.minhash``);
   one survivor per cluster.
3. ``line_dedup``: a non-blank line that occurs more than once anywhere in what is left is
   boilerplate (menus, footers, cookie banners) and is removed everywhere (``data.dedup``); a
   document left with nothing but blank lines is dropped.

The order matters: line dedup first would strip every line two near-duplicate pages share -- and
every line of an exact duplicate, dropping *both* copies -- before MinHash could pick one survivor.
Survivors are chosen by a seeded hash of ``"shard/index"``, so the choice depends on the seed but
not on the order in which shards finished.

Simplification: the texts of the whole run are held in memory (a crawl-sized run would shard this
the way datatrove's multi-step MinHash does).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field

from data.dedup import remove_repeated_lines, repeated_line_hashes
from data.minhash import find_duplicate_clusters, survivor_priority

Key = tuple[str, int]  # (shard name, index of the document in the shard's kept documents)


@dataclass(frozen=True)
class DedupConfig:
    """Settings of the corpus-wide deduplication (stage 2 of the pipeline)."""

    exact_dedup: bool = True  # drop exact duplicate documents (one copy survives)
    fuzzy_dedup: bool = True  # MinHash + LSH near-duplicate removal (one per cluster survives)
    line_dedup: bool = True  # then remove non-blank lines repeated anywhere in the corpus
    minhash_num_hashes: int = 128  # MinHash signature length
    minhash_num_bands: int = 16  # LSH bands (num_hashes / num_bands rows each)
    minhash_ngrams: int = 5  # word n-gram shingles
    minhash_threshold: float = 0.8  # verified Jaccard at or above this is a duplicate
    seed: int = 0  # MinHash permutations and survivor choice

    def __post_init__(self) -> None:
        for name in ("minhash_num_hashes", "minhash_num_bands", "minhash_ngrams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.minhash_num_hashes % self.minhash_num_bands:
            raise ValueError(
                f"minhash_num_hashes ({self.minhash_num_hashes}) must be a multiple of "
                f"minhash_num_bands ({self.minhash_num_bands})"
            )
        threshold = self.minhash_threshold
        if not isinstance(threshold, int | float) or not math.isfinite(threshold) or not 0 <= threshold <= 1:
            raise ValueError(f"minhash_threshold must be a finite number in [0, 1], got {threshold!r}")


@dataclass
class DedupResult:
    """The surviving texts per shard (in their original order) and what each pass did."""

    survivors: dict[str, list[str]]
    dropped: dict[str, Counter] = field(default_factory=dict)  # pass -> reason -> documents
    metrics: dict[str, dict[str, int]] = field(default_factory=dict)  # pass -> what it counted


def _exact_pass(current: dict[Key, str], seed: int) -> list[Key]:
    """Keys of exact duplicates to drop (all but one per group of identical texts)."""
    groups: dict[bytes, list[Key]] = {}
    for key, text in current.items():
        # 128-bit digests: a collision (two different texts merged) is out of reach at any corpus size.
        digest = hashlib.blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=16).digest()
        groups.setdefault(digest, []).append(key)
    return [key for members in groups.values() for key in members if key != _survivor(members, seed)]


def _survivor(members: list[Key], seed: int) -> Key:
    # The seeded priority of "shard/index": independent of shard order and of the other groups.
    return min(members, key=lambda key: survivor_priority(f"{key[0]}/{key[1]}", seed))


def _minhash_pass(current: dict[Key, str], config: DedupConfig, metrics: dict) -> list[Key]:
    """Keys of near-duplicates to drop (all but one per verified cluster)."""
    live = list(current)  # clusters come back as positions in this list
    clusters, candidates, verified = find_duplicate_clusters(
        [current[k] for k in live],
        config.minhash_num_hashes,
        config.minhash_num_bands,
        config.minhash_ngrams,
        config.minhash_threshold,
        config.seed,
    )
    metrics["minhash_dedup"] = {"candidate pairs": candidates, "verified pairs": verified}
    drop = []
    for members in clusters:
        keys = [live[m] for m in members]
        survivor = _survivor(keys, config.seed)
        drop += [key for key in keys if key != survivor]
    return drop


def deduplicate(texts: dict[str, list[str]], config: DedupConfig) -> DedupResult:
    """Stage 2 over all shards' kept texts (see the module docstring)."""
    # Every document by (shard, index): the passes delete keys, and the survivors keep shard order.
    current = {(shard, i): text for shard in sorted(texts) for i, text in enumerate(texts[shard])}
    result = DedupResult(survivors={})

    def drop(keys: list[Key], name: str, reason: str) -> None:
        for key in keys:
            del current[key]
        if keys:
            result.dropped.setdefault(name, Counter())[reason] += len(keys)

    if config.exact_dedup:
        drop(_exact_pass(current, config.seed), "exact_dedup", "exact duplicate")
    if config.fuzzy_dedup and current:
        drop(_minhash_pass(current, config, result.metrics), "minhash_dedup", "near duplicate")
    # Line dedup runs last, over the documents that survived: a copy dropped above does not make
    # its lines count as repeated in the one that was kept.
    if config.line_dedup and current:
        repeated = repeated_line_hashes(current.values())
        removed_lines, emptied = 0, []
        for key, text in current.items():
            current[key], removed = remove_repeated_lines(text, repeated)
            removed_lines += removed
            if not current[key].strip():  # nothing but repeated lines (boilerplate): drop the document
                emptied.append(key)
        drop(emptied, "line_dedup", "all lines repeated")
        result.metrics["line_dedup"] = {"lines removed": removed_lines}
    result.survivors = {
        shard: [current[(shard, i)] for i in range(len(texts[shard])) if (shard, i) in current]
        for shard in texts
    }
    return result
