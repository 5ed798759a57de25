"""Fuzzy document deduplication with MinHash signatures and locality-sensitive hashing (LSH).

Handout section "Deduplication / MinHash + LSH" (Broder 1997, "On the resemblance and containment
of documents"; Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*, ch. 3). Two documents
are near-duplicates when the Jaccard similarity of their word n-gram sets is high:

    J(A, B) = |A ∩ B| / |A ∪ B|

Steps, each a function below:

1. ``normalize_text``: NFD, drop accents, lowercase, drop punctuation, collapse whitespace.
2. ``shingle_hashes``: the set of word n-grams ("shingles"), each as a 64-bit hash
   (``batch_shingle_hashes`` does a whole batch of documents in one set of numpy passes).
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

- The universal hash family is multiply-add-shift (Dietzfelbinger 1996, "Universal hashing and
  k-wise independent random variables via integer arithmetic without primes"):
  h_i(x) = ((a_i x + b_i) mod 2^64) >> 32 for a 32-bit key x and random 64-bit a_i, b_i. It is
  strongly universal like the textbook (a x + b) mod p, but the "mod" is free uint64 wraparound, so
  numpy needs a multiply, an add and a min per entry (a Mersenne-prime version needs seven passes).
  Neither family is exactly min-wise independent; the tests check that the agreement rate tracks
  the true Jaccard as closely as datasketch's does.
- A shingle's 64-bit hash is a polynomial (Rabin-Karp) hash of its UTF-8 bytes followed by the
  MurmurHash3 finaliser, computed for all shingles of a document with prefix sums, never per string;
  ``string_hash`` and ``shingles`` are the plain references, and tests check they agree. The key x
  of the permutations is the high 32 bits; the exact Jaccard check uses all 64. A polynomial hash
  mod 2^64 has known adversarial collisions (Thue-Morse strings); natural text does not hit them.
- Fewer words than ``ngrams``: the whole (normalised) document is one shingle; an empty document
  has no shingles, its signature is all ``EMPTY_SIGNATURE_VALUE``, it is left out of LSH and it
  is never a duplicate.
- Each input file is one document; files are read as UTF-8 with undecodable bytes replaced (only
  for comparison -- survivors are copied byte for byte).
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from jaxtyping import UInt32, UInt64

from data.dedup import output_paths, write_atomically

# Base R of the polynomial (Rabin-Karp) shingle hash; odd, so it has an inverse mod 2^64.
_ROLL_BASE = 0x9E3779B97F4A7C15
_ROLL_BASE_INVERSE = pow(_ROLL_BASE, -1, 1 << 64)
# Signature entry of a document without shingles (larger than or equal to any real value).
EMPTY_SIGNATURE_VALUE = (1 << 32) - 1
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lowercase, NFD-normalise, strip accents and punctuation, collapse whitespace.

    >>> normalize_text("  Café, CRÈME-brûlée!\\n\\tOK ")
    'cafe cremebrulee ok'
    """
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(
        ch for ch in text if not unicodedata.combining(ch)
    )  # accents are combining marks after NFD
    text = _PUNCTUATION.sub("", text)
    return _WHITESPACE.sub(" ", text).strip()


def shingles(normalized_text: str, ngrams: int) -> set[str]:
    """Reference: the set of word n-grams of an already normalised text, as strings.

    >>> sorted(shingles("a b c d", 3))
    ['a b c', 'b c d']
    """
    words = normalized_text.split()
    if not words:
        return set()
    if len(words) < ngrams:
        return {" ".join(words)}
    return {" ".join(words[i : i + ngrams]) for i in range(len(words) - ngrams + 1)}


_MASK64 = (1 << 64) - 1


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a fixed bijection that spreads every input bit over the
    output, so structure left by the polynomial hash does not reach the permutations."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def string_hash(shingle: str) -> int:
    """Reference 64-bit hash of one shingle: the polynomial sum_j c_j R^j mod 2^64 over its UTF-8
    bytes c_j, then the finaliser. ``shingle_hashes`` computes the same numbers vectorised."""
    h = 0
    for j, c in enumerate(shingle.encode("utf-8")):
        h = (h + c * pow(_ROLL_BASE, j, 1 << 64)) & _MASK64
    return int(_fmix64(np.array([h], dtype=np.uint64))[0])


def shingle_hashes(normalized_text: str, ngrams: int) -> UInt64[np.ndarray, " shingles"]:
    """The sorted, distinct ``string_hash`` values of the word n-grams of ``normalized_text``.

    Vectorised with a Rabin-Karp prefix sum: with Pref[i] = sum_{j<i} c_j R^j, the polynomial
    of the substring [s, e) is (Pref[e] - Pref[s]) * R^-s (R is odd, so R^-1 exists mod 2^64).
    In a normalised text words are separated by single spaces, so the n-gram that starts at word
    k is exactly the bytes from word k's start to word k+n-1's end.

    >>> text = "to be or not to be"
    >>> sorted(shingle_hashes(text, 2).tolist()) == sorted(string_hash(s) for s in shingles(text, 2))
    True
    """
    if ngrams < 1:
        raise ValueError(f"ngrams must be >= 1, got {ngrams}")
    data = np.frombuffer(normalized_text.encode("utf-8"), dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.uint64)
    spaces = np.flatnonzero(data == 32)  # UTF-8 continuation bytes are never 0x20
    starts = np.concatenate(([0], spaces + 1))  # (words,)
    ends = np.concatenate((spaces, [data.size]))
    n = min(ngrams, starts.size)  # a short document is one shingle of all its words
    first, last = starts[: starts.size - n + 1], ends[n - 1 :]  # byte span of each shingle
    with np.errstate(over="ignore"):  # wraparound is the intended arithmetic mod 2^64
        powers = np.full(data.size, _ROLL_BASE, dtype=np.uint64)
        powers[0] = 1
        powers = np.cumprod(powers)  # R^j
        inverse_powers = np.full(data.size, _ROLL_BASE_INVERSE, dtype=np.uint64)
        inverse_powers[0] = 1
        inverse_powers = np.cumprod(inverse_powers)  # R^-j
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(data * powers, dtype=np.uint64)))
        polynomial = (prefix[last] - prefix[first]) * inverse_powers[first]
        return np.unique(_fmix64(polynomial))


def batch_shingle_hashes(
    normalized_texts: Sequence[str], ngrams: int
) -> list[UInt64[np.ndarray, " shingles"]]:
    """``shingle_hashes`` of many documents in one set of numpy passes over their joined bytes,
    *unsorted and with repeats* (a signature's minimum does not care; ``jaccard`` takes sets).
    The fast path of ``find_duplicate_clusters``: no per-document numpy calls."""
    if ngrams < 1:
        raise ValueError(f"ngrams must be >= 1, got {ngrams}")
    result = [np.zeros(0, dtype=np.uint64) for _ in normalized_texts]
    nonempty = [i for i, text in enumerate(normalized_texts) if text]
    if not nonempty:
        return result
    texts = [normalized_texts[i] for i in nonempty]
    data = np.frombuffer(" ".join(texts).encode("utf-8"), dtype=np.uint8)
    spaces = np.flatnonzero(data == 32)
    word_starts = np.concatenate(([0], spaces + 1))  # (all words,)
    word_ends = np.concatenate((spaces, [data.size]))
    words_per_doc = np.array([text.count(" ") + 1 for text in texts], dtype=np.int64)
    first_word = np.concatenate(([0], np.cumsum(words_per_doc)[:-1]))  # of each document
    span = np.minimum(ngrams, words_per_doc)  # words per shingle (a short document: all of them)
    shingles_per_doc = words_per_doc - span + 1
    doc = np.repeat(np.arange(len(texts)), shingles_per_doc)  # (shingles,) owning document
    offsets = np.concatenate(([0], np.cumsum(shingles_per_doc)))
    start_word = first_word[doc] + np.arange(offsets[-1]) - offsets[doc]
    first, last = word_starts[start_word], word_ends[start_word + span[doc] - 1]  # byte spans
    with np.errstate(over="ignore"):  # wraparound is the intended arithmetic mod 2^64
        powers = np.full(data.size, _ROLL_BASE, dtype=np.uint64)
        powers[0] = 1
        powers = np.cumprod(powers)
        inverse_powers = np.full(data.size, _ROLL_BASE_INVERSE, dtype=np.uint64)
        inverse_powers[0] = 1
        inverse_powers = np.cumprod(inverse_powers)
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(data * powers, dtype=np.uint64)))
        hashes = _fmix64((prefix[last] - prefix[first]) * inverse_powers[first])
    for i, piece in zip(nonempty, np.split(hashes, offsets[1:-1]), strict=True):
        result[i] = piece
    return result


def make_permutations(
    num_hashes: int, seed: int = 0
) -> tuple[UInt64[np.ndarray, " hashes"], UInt64[np.ndarray, " hashes"]]:
    """Seeded 64-bit coefficients (a, b) of the hash functions h_i(x) = ((a_i x + b_i) mod 2^64) >> 32."""
    if num_hashes < 1:
        raise ValueError(f"num_hashes must be >= 1, got {num_hashes}")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, np.iinfo(np.uint64).max, size=num_hashes, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, np.iinfo(np.uint64).max, size=num_hashes, dtype=np.uint64, endpoint=True)
    return a, b


def minhash_signature_reference(hashes: Sequence[int], a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Plain-Python reference: for each hash function, the minimum over shingles of
    h_i(x) = ((a_i x + b_i) mod 2^64) >> 32 with x the high 32 bits of the shingle hash."""
    signature = []
    for a_i, b_i in zip(a, b, strict=True):
        smallest = EMPTY_SIGNATURE_VALUE
        for shingle_hash in hashes:
            x = int(shingle_hash) >> 32
            smallest = min(smallest, ((int(a_i) * x + int(b_i)) & _MASK64) >> 32)
        signature.append(smallest)
    return signature


def minhash_signatures(
    documents: Sequence[np.ndarray],
    a: UInt64[np.ndarray, " hashes"],
    b: UInt64[np.ndarray, " hashes"],
    chunk_size: int = 8192,
) -> UInt32[np.ndarray, "docs hashes"]:
    """Signatures of many documents at once from their shingle hashes (``shingle_hashes`` or
    ``batch_shingle_hashes``; repeated hashes are harmless, the minimum ignores them).

    All shingles of the batch are concatenated into one row x; each chunk of ~8k columns computes
    the (hashes, shingles) matrix a x + b in one go (uint64 arithmetic wraps: that is the
    mod 2^64) and ``np.minimum.reduceat`` along the contiguous axis takes each document's
    minimum. The shift by 32 is monotone, so it is applied once to the minima instead of to every
    entry. Documents without shingles get the all-``EMPTY_SIGNATURE_VALUE`` signature.
    """
    num_hashes = len(a)
    signatures = np.full((len(documents), num_hashes), EMPTY_SIGNATURE_VALUE, dtype=np.uint32)
    sizes = np.array([len(d) for d in documents], dtype=np.int64)
    nonempty = np.flatnonzero(sizes)
    if nonempty.size == 0:
        return signatures
    x = np.concatenate([documents[i] for i in nonempty]) >> np.uint64(32)  # (total,) 32-bit keys
    starts = np.concatenate(([0], np.cumsum(sizes[nonempty])[:-1]))  # first column of each document
    ends = starts + sizes[nonempty]
    a_column, b_column = a[:, None], b[:, None]
    buffer = np.empty((num_hashes, max(chunk_size, int(sizes.max()))), dtype=np.uint64)
    # Walk the columns in chunks cut at document boundaries, so each reduceat sees whole documents.
    doc = 0
    while doc < nonempty.size:
        last = max(int(np.searchsorted(ends, starts[doc] + chunk_size, side="right")), doc + 1)
        lo, hi = int(starts[doc]), int(ends[last - 1])
        values = buffer[:, : hi - lo]  # (hashes, shingles)
        np.multiply(a_column, x[None, lo:hi], out=values)
        np.add(values, b_column, out=values)
        minima = np.minimum.reduceat(values, starts[doc:last] - lo, axis=1)  # (hashes, docs)
        signatures[nonempty[doc:last]] = (minima >> np.uint64(32)).T
        doc = last
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
    rows = num_hashes // num_bands
    real = np.arange(num_docs)
    pairs: set[tuple[int, int]] = set()
    for band in range(num_bands):
        block = np.ascontiguousarray(signatures[real, band * rows : (band + 1) * rows])
        # One bucket id per distinct band: rows of bytes compared as a whole.
        _, bucket = np.unique(
            block.view(np.dtype((np.void, block.itemsize * rows))).ravel(), return_inverse=True
        )
        order = np.argsort(bucket, kind="stable")
        boundaries = np.flatnonzero(np.diff(bucket[order])) + 1
        for members in np.split(real[order], boundaries):
            if len(members) > 1:
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
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> bool:
        """Merge the sets of i and j; False if they were already one set."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return False
        if self.size[ri] < self.size[rj]:
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
    hashed = batch_shingle_hashes([normalize_text(t) for t in texts], ngrams)
    nonempty = [i for i, h in enumerate(hashed) if h.size]  # an empty document duplicates nothing
    a, b = make_permutations(num_hashes, seed)
    signatures = minhash_signatures([hashed[i] for i in nonempty], a, b)
    candidates = [(nonempty[i], nonempty[j]) for i, j in lsh_candidate_pairs(signatures, num_bands)]
    union_find = UnionFind(len(texts))
    verified = 0
    for i, j in candidates:
        if union_find.find(i) == union_find.find(j):
            continue  # already one cluster: verifying again cannot change the clusters
        if jaccard(hashed[i], hashed[j]) >= jaccard_threshold:
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
    paths = [Path(f) for f in input_files]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"minhash_deduplication: input file not found: {path}")
    output_directory = Path(output_directory)
    output_directory.mkdir(parents=True, exist_ok=True)
    outputs = output_paths(paths, output_directory)
    texts = [path.read_bytes().decode("utf-8", errors="replace") for path in paths]
    clusters, candidates, verified = find_duplicate_clusters(
        texts, num_hashes, num_bands, ngrams, jaccard_threshold, seed
    )
    removed: set[int] = set()
    for members in clusters:
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
