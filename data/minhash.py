"""Fuzzy document deduplication with MinHash signatures and locality-sensitive hashing (LSH).

Handout section "Deduplication / MinHash + LSH" (Broder 1997, "On the resemblance and containment
of documents"; Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3). Two documents
are near-duplicates when the Jaccard similarity of their word n-gram sets is high:

    J(A, B) = |A ∩ B| / |A ∪ B|

Steps (1 and 2 in their own modules, the rest below):

1. ``data.normalize.normalize_text``: lowercase, NFD, drop accents and punctuation, collapse whitespace -- one
   ``str.translate`` pass with a table that says, per character, "delete", "space" or "keep"
   (``normalize_text_reference`` is the plain regex version; the graders compare the two).
2. ``data.shingles.hash_shingles``: the set of word n-grams ("shingles"), each as a 64-bit hash
   for a whole batch of raw documents in a few numpy passes.
3. ``minhash_signatures``: for k seeded hash functions h_i, the signature is
   [min over shingles of h_i]; P[sig_A[i] == sig_B[i]] ≈ J(A, B). All k functions are applied to
   all shingles of a batch of documents at once, a (k, ~8k shingles) block at a time.
4. ``lsh_candidate_pairs``: cut the k rows into ``num_bands`` bands of r = k / num_bands rows; two
   documents are candidates if any band matches exactly. P[candidate] = 1 - (1 - J^r)^num_bands,
   an S-curve around J ≈ (1 / num_bands)^(1 / r).
5. Candidates are *verified* with the true Jaccard of their shingle sets (LSH only proposes), and
   verified pairs are merged with a union-find into clusters.
6. One survivor per cluster, chosen deterministically from a seed; the others are dropped.

Choices and simplifications:

- The k hash functions are h_i(x) = (a_i x + b_i) mod 2^32 with random odd a_i and random b_i,
  applied to the key x = the high 32 bits of a shingle's hash: each is a permutation of the 32-bit
  numbers, and the "mod" is free uint32 wraparound, so numpy needs one multiply, one add and one
  min per entry on 4-byte numbers (datasketch's (a x + b) mod p needs a 64-bit modulo). On raw
  keys this family would be weak -- the low bits of a x + b depend only on the low bits of x --
  but x is already the output of a strong mixer, and the minimum is decided by the high bits,
  which depend on every bit of x. Measured over 3,000 random pairs of sets: the agreement rate's
  error, in units of its ideal standard deviation sqrt(J(1 - J) / k), has mean 0.00 and standard
  deviation 1.00, as for 64-bit multiply-add-shift (Dietzfelbinger 1996); no such family is exactly
  min-wise independent, and the graders check that the estimate tracks the true Jaccard as
  closely as datasketch's. The exact Jaccard check uses all 64 bits of the shingle hashes.
- Fewer words than ``ngrams``: the whole (normalised) document is one shingle; an empty document
  has no shingles, its signature is all ``EMPTY_SIGNATURE_VALUE``, it is left out of LSH and it
  is never a duplicate.
- Each input file is one document; files are read as UTF-8 with undecodable bytes replaced (only
  for comparison -- survivors are copied byte for byte).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from jaxtyping import UInt32

from data.dedup import input_and_output_paths, write_atomically
from data.shingles import ShingleSets, hash_shingles

# Signature entry of a document without shingles (larger than or equal to any real value).
EMPTY_SIGNATURE_VALUE = (1 << 32) - 1


def make_permutations(
    num_hashes: int, seed: int = 0
) -> tuple[UInt32[np.ndarray, " hashes"], UInt32[np.ndarray, " hashes"]]:
    """Seeded coefficients (a, b) of the hash functions h_i(x) = (a_i x + b_i) mod 2^32, a_i odd."""
    if num_hashes < 1:
        raise ValueError(f"num_hashes must be >= 1, got {num_hashes}")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 1 << 32, size=num_hashes, dtype=np.uint64).astype(np.uint32) | np.uint32(1)
    b = rng.integers(0, 1 << 32, size=num_hashes, dtype=np.uint64).astype(np.uint32)
    return a, b


def minhash_signature_reference(hashes: Sequence[int], a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Plain-Python reference: for each hash function, the minimum over shingles of
    h_i(x) = (a_i x + b_i) mod 2^32 with x the high 32 bits of the shingle hash."""
    signature = []
    for a_i, b_i in zip(a, b, strict=True):
        smallest = EMPTY_SIGNATURE_VALUE
        for shingle_hash in hashes:
            x = int(shingle_hash) >> 32
            smallest = min(smallest, (int(a_i) * x + int(b_i)) % (1 << 32))
        signature.append(smallest)
    return signature


def minhash_signatures(
    shingle_sets: ShingleSets,
    a: UInt32[np.ndarray, " hashes"],
    b: UInt32[np.ndarray, " hashes"],
    chunk_size: int = 8192,
) -> UInt32[np.ndarray, "docs hashes"]:
    """Signatures of many documents at once from their packed shingle hashes (``hash_shingles``;
    repeated hashes are harmless, the minimum ignores them). Documents without shingles get the
    all-``EMPTY_SIGNATURE_VALUE`` signature. ``minhash_signature_reference`` is the plain loop."""
    num_hashes = len(a)
    # Document i's shingles are hashes[offsets[i] : offsets[i + 1]]: one flat array for the batch.
    sizes = np.diff(shingle_sets.offsets)  # (docs,) shingles per document
    nonempty = np.flatnonzero(sizes)  # empty documents own no columns and keep EMPTY_SIGNATURE_VALUE
    signatures = np.full((len(shingle_sets), num_hashes), EMPTY_SIGNATURE_VALUE, dtype=np.uint32)
    x = (shingle_sets.hashes >> np.uint64(32)).astype(np.uint32)  # (shingles,) keys of the permutations
    starts, ends = shingle_sets.offsets[nonempty], shingle_sets.offsets[nonempty + 1]  # (nonempty,) each
    buffer = np.empty((num_hashes, chunk_size), dtype=np.uint32)
    # The (hashes, shingles) matrix of a whole batch would not fit in memory, so walk its columns a
    # fixed-size chunk at a time: memory stays num_hashes * chunk_size * 4 bytes (4 MiB) whatever
    # the documents, and a chunk is big enough that numpy, not Python, dominates the time.
    for lo in range(0, x.size, chunk_size):
        hi = min(lo + chunk_size, x.size)
        # The non-empty documents tile the columns, so those overlapping [lo, hi) are a contiguous
        # run; each starts at its first column or at lo (a document cut by the previous chunk).
        first = int(np.searchsorted(ends, lo, side="right"))  # first document ending after lo
        last = int(np.searchsorted(starts, hi, side="left"))  # one past the last starting before hi
        # E.g. documents [0, 5), [5, 12) and chunk [4, 8): first = 0, last = 2, segments = [0, 1].
        segments = np.maximum(starts[first:last], lo) - lo  # (documents in chunk,) chunk-relative
        values = buffer[:, : hi - lo]  # (hashes, chunk)
        np.multiply(a[:, None], x[None, lo:hi], out=values)  # uint32 wraps around: this is mod 2^32
        np.add(values, b[:, None], out=values)  # values[i, c] = h_i(x_c) = (a_i x_c + b_i) mod 2^32
        # One minimum per document segment along the contiguous axis: (hashes, documents in chunk).
        chunk_minima = np.minimum.reduceat(values, segments, axis=1)
        # A document cut by a chunk boundary keeps the smaller of its two partial minima.
        rows = nonempty[first:last]  # their row in the signature matrix
        signatures[rows] = np.minimum(signatures[rows], chunk_minima.T)
    return signatures


def jaccard(hashes_a: np.ndarray, hashes_b: np.ndarray) -> float:
    """True Jaccard similarity of two shingle sets given as hash arrays (repeats allowed;
    two empty sets: 0)."""
    set_a, set_b = np.unique(hashes_a), np.unique(hashes_b)
    union = len(set_a) + len(set_b)
    if union == 0:
        return 0.0
    inter = np.intersect1d(set_a, set_b, assume_unique=True).size
    return inter / (union - inter)


def lsh_candidate_pairs(
    signatures: UInt64[np.ndarray, "docs hashes"], num_bands: int
) -> list[tuple[int, int]]:
    """Pairs (i < j) of documents whose signatures agree on every row of at least one band,
    sorted. (Leave documents without shingles out: their signatures are all equal.)"""
    num_docs, num_hashes = signatures.shape
    if num_bands < 1 or num_hashes % num_bands:
        raise ValueError(f"num_hashes ({num_hashes}) must be a positive multiple of num_bands ({num_bands})")
    # b bands of r rows: two documents with Jaccard s share a band with probability 1 - (1 - s^r)^b,
    # an S-curve whose threshold (1/b)^(1/r) sits where the caller chose b and r.
    rows = num_hashes // num_bands
    real = np.arange(num_docs)
    pairs: set[tuple[int, int]] = set()
    for band in range(num_bands):
        block = np.ascontiguousarray(signatures[real, band * rows : (band + 1) * rows])
        # One bucket id per distinct band: each row's r values viewed as one opaque (void) value of
        # r * itemsize bytes, so np.unique compares whole bands: (docs, r) -> (docs,) bucket ids.
        _, bucket = np.unique(
            block.view(np.dtype((np.void, block.itemsize * rows))).ravel(), return_inverse=True
        )
        # Sort by bucket and cut where the bucket id changes: each piece is one bucket's documents.
        order = np.argsort(bucket, kind="stable")
        boundaries = np.flatnonzero(np.diff(bucket[order])) + 1
        for members in np.split(real[order], boundaries):
            if len(members) > 1:  # every pair in a bucket is a candidate (to be verified by Jaccard)
                members = sorted(members.tolist())
                pairs.update(
                    (members[i], members[j]) for i in range(len(members)) for j in range(i + 1, len(members))
                )
    return sorted(pairs)


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]  # path halving: point to the grandparent
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> bool:
        """Merge the sets of i and j; False if they were already one set."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return False
        if self.size[ri] < self.size[rj]:  # hang the smaller tree under the larger: depth O(log n)
            ri, rj = rj, ri
        self.parent[rj] = ri
        self.size[ri] += self.size[rj]
        return True

    def groups(self) -> list[list[int]]:
        """Every set, members sorted, sets ordered by their smallest member."""
        by_root: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            by_root.setdefault(self.find(i), []).append(i)
        return sorted(by_root.values(), key=lambda members: members[0])


def survivor_priority(name: str, seed: int) -> bytes:
    """The survivor of a cluster is the member with the smallest priority: a seeded hash of its
    name, so the choice depends on the seed but not on input order or other clusters."""
    return hashlib.blake2b(
        name.encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "little", signed=True)
    ).digest()


@dataclass(frozen=True)
class MinHashDedupStats:
    """What :func:`minhash_deduplication` did."""

    documents: int  # input files
    candidate_pairs: int  # pairs proposed by LSH
    verified_pairs: int  # candidates whose true Jaccard >= threshold
    clusters: int  # clusters with 2+ members
    kept: int  # documents written (singletons + one survivor per cluster)
    removed: tuple[str, ...]  # names of the dropped files


def find_duplicate_clusters(
    texts: Sequence[str],
    num_hashes: int,
    num_bands: int,
    ngrams: int,
    jaccard_threshold: float,
    seed: int = 0,
) -> tuple[list[list[int]], int, int]:
    """Clusters (lists of indices, 2+ members) of near-duplicate texts, plus the number of LSH
    candidate pairs and of verified pairs. Used by the file-level dedup and by the pipeline."""
    if num_bands < 1 or num_hashes % num_bands:
        raise ValueError(f"num_hashes ({num_hashes}) must be a positive multiple of num_bands ({num_bands})")
    if not 0.0 <= jaccard_threshold <= 1.0:
        raise ValueError(f"jaccard_threshold must be in [0, 1], got {jaccard_threshold}")
    hashed = hash_shingles(texts, ngrams)
    a, b = make_permutations(num_hashes, seed)
    nonempty = np.flatnonzero(np.diff(hashed.offsets)).tolist()  # an empty document duplicates nothing
    signatures = minhash_signatures(hashed, a, b)[nonempty]
    candidates = [(nonempty[i], nonempty[j]) for i, j in lsh_candidate_pairs(signatures, num_bands)]
    # Near-duplication is not transitive, but clusters are: a ~ b and b ~ c put a, b, c together.
    union_find = UnionFind(len(texts))
    verified = 0
    for i, j in candidates:
        if union_find.find(i) == union_find.find(j):
            continue  # already one cluster: verifying again cannot change the clusters
        if jaccard(hashed.document(i), hashed.document(j)) >= jaccard_threshold:
            verified += 1
            union_find.union(i, j)
    clusters = [g for g in union_find.groups() if len(g) > 1]
    return clusters, len(candidates), verified


def minhash_deduplication(
    input_files: Sequence[str | os.PathLike],
    num_hashes: int,
    num_bands: int,
    ngrams: int,
    jaccard_threshold: float,
    output_directory: str | os.PathLike,
    seed: int = 0,
) -> MinHashDedupStats:
    """Copy to ``output_directory`` (same names) every input file except near-duplicates: of each
    cluster of files with pairwise-verified Jaccard >= ``jaccard_threshold`` only one survives."""
    paths, outputs = input_and_output_paths(input_files, output_directory, "minhash_deduplication")
    texts = [path.read_bytes().decode("utf-8", errors="replace") for path in paths]
    clusters, candidates, verified = find_duplicate_clusters(
        texts, num_hashes, num_bands, ngrams, jaccard_threshold, seed
    )
    removed: set[int] = set()
    for members in clusters:  # one survivor per cluster, every other member removed
        survivor = min(members, key=lambda i: survivor_priority(paths[i].name, seed))
        removed.update(i for i in members if i != survivor)
    for i, (path, output) in enumerate(zip(paths, outputs, strict=True)):
        if i not in removed:
            write_atomically(output, [path.read_bytes()])
    return MinHashDedupStats(
        documents=len(paths),
        candidate_pairs=candidates,
        verified_pairs=verified,
        clusters=len(clusters),
        kept=len(paths) - len(removed),
        removed=tuple(sorted(paths[i].name for i in removed)),
    )
