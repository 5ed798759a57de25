"""Word n-grams ("shingles") of documents as 64-bit hashes, for a whole batch at once (handout 2.8).

MinHash compares documents by their sets of word n-grams; it needs one number per shingle. The
shingle hash, worked out (``string_hash`` is the plain reference, ``shingles`` the plain shingles)::

    word hash     w = fmix64( sum_j ord(c_j) R^j  mod 2^64 )      over the characters c_j of a word
    shingle hash  s = fmix64( sum_k w_k R^k       mod 2^64 )      over the n words of the shingle

Both sums are the *same rolling (Rabin-Karp) hash* of a span of numbers, computed for every span
at once by ``_rolling_hashes`` from one prefix sum: with Pref[i] = sum_{j<i} v_j R^j,

    sum_{j<e-s} v_{s+j} R^j = (Pref[e] - Pref[s]) * R^-s        (R is odd, so R^-1 exists mod 2^64)

so ``hash_shingles`` runs it twice -- over the characters of a whole batch of normalised texts
(giving word hashes), then over the word hashes (giving shingle hashes) -- and never makes a Python
string per shingle. Hashing words first means no whitespace collapsing is needed: runs of spaces
only separate words. ``fmix64`` (MurmurHash3's finaliser) spreads every input bit over the output.

Simplifications: fewer words than ``ngrams`` make one shingle of all the words; an empty document
has none. A polynomial hash mod 2^64 has known adversarial collisions (Thue-Morse strings);
natural text does not hit them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from jaxtyping import UInt64

from data.normalize import ascii_codes, normalized_codes

# Base R of the rolling (Rabin-Karp) hash; odd, so it has an inverse mod 2^64.
_ROLL_BASE = 0x9E3779B97F4A7C15
_ROLL_BASE_INVERSE = pow(_ROLL_BASE, -1, 1 << 64)
_MASK64 = (1 << 64) - 1
# Texts are hashed in blocks of about this many characters: bounds the numpy temporaries.
_BLOCK_CHARS = 1 << 20


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


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a fixed bijection that spreads every input bit over the
    output, so structure left by the polynomial hash does not reach the permutations."""
    h = h ^ (h >> np.uint64(33))  # a new array: the caller's is left alone; in place from here on
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


def _polynomial(values: Sequence[int]) -> int:
    """Reference rolling hash of one span: sum_j v_j R^j mod 2^64, then the finaliser."""
    h = 0
    for j, v in enumerate(values):
        h = (h + v * pow(_ROLL_BASE, j, 1 << 64)) & _MASK64
    return int(_fmix64(np.array([h], dtype=np.uint64))[0])


def string_hash(shingle: str) -> int:
    """Reference 64-bit hash of one shingle (words separated by spaces): the rolling hash of its
    words' rolling hashes (see the module docstring). ``hash_shingles`` computes the same numbers."""
    return _polynomial([_polynomial([ord(c) for c in word]) for word in shingle.split()])


_POWERS: dict[str, np.ndarray] = {}  # the largest tables made so far: every block reuses them


def _power_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    """R^j and R^-j mod 2^64 for j < size (at least), made once per doubling of the size."""
    if _POWERS.get("up", np.zeros(0)).size < size:
        size = 1 << max(16, (size - 1).bit_length())  # next power of two (>= 65,536): few rebuilds
        with np.errstate(over="ignore"):
            for name, base in (("up", _ROLL_BASE), ("down", _ROLL_BASE_INVERSE)):
                powers = np.full(size, base, dtype=np.uint64)
                powers[0] = 1
                _POWERS[name] = np.cumprod(powers)  # [1, B, B^2, ...] mod 2^64 by wraparound
    return _POWERS["up"], _POWERS["down"]


def _rolling_hashes(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> UInt64[np.ndarray, " spans"]:
    """The one rolling-hash routine: fmix64(sum_{j<e-s} values[s+j] R^j mod 2^64) for every span
    [s, e), from one prefix sum (the identity in the module docstring)."""
    powers, inverse = _power_tables(values.size)
    prefix = np.zeros(values.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wraparound is the intended arithmetic mod 2^64
        np.multiply(values, powers[: values.size], out=prefix[1:])  # v_j R^j
        np.cumsum(prefix[1:], out=prefix[1:])  # Pref[i] = sum_{j<i} v_j R^j
        # Pref[e] - Pref[s] = sum_{s<=j<e} v_j R^j = R^s * (the span's own hash): times R^-s removes
        # the offset, so the same words hash the same wherever they sit. (spans,) each step.
        spans = prefix[ends]
        spans -= prefix[starts]
        spans *= inverse[starts]
        return _fmix64(spans)


class ShingleSets(NamedTuple):
    """The shingle hashes of many documents, packed: document i owns
    ``hashes[offsets[i]:offsets[i + 1]]`` (unsorted, repeats possible)."""

    hashes: UInt64[np.ndarray, " shingles"]
    offsets: np.ndarray  # (docs + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def document(self, i: int) -> UInt64[np.ndarray, " doc_shingles"]:
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]


def _hash_block(chars: np.ndarray, text_ends: np.ndarray, ngrams: int) -> ShingleSets:
    """Shingle hashes of normalised texts given as one code array (spaces between words, maybe
    several) with the end of each text."""
    # Words are maximal runs of non-spaces: a start follows a space, an end precedes one.
    space = chars == 32
    is_start, is_end = ~space, ~space
    is_start[1:] &= space[:-1]
    is_end[:-1] &= space[1:]
    starts, ends = np.flatnonzero(is_start), np.flatnonzero(is_end) + 1  # (words,)
    word_hashes = _rolling_hashes(chars, starts, ends)  # (words,): level 1, characters -> word
    # A word belongs to the first text whose end lies after its start.
    words_per_doc = np.bincount(np.searchsorted(text_ends, starts, side="right"), minlength=len(text_ends))
    first_word = np.concatenate(([0], np.cumsum(words_per_doc)[:-1]))  # of each document
    span = np.minimum(ngrams, words_per_doc)  # words per shingle (a short document: all of them)
    shingles_per_doc = np.where(words_per_doc > 0, words_per_doc - span + 1, 0)  # w - n + 1 windows
    offsets = np.concatenate(([0], np.cumsum(shingles_per_doc)))  # (docs + 1,)
    doc = np.repeat(np.arange(len(text_ends)), shingles_per_doc)  # (shingles,) owning document
    # Shingle k of its document starts at that document's k-th word.
    start_word = first_word[doc] + np.arange(offsets[-1]) - offsets[doc]  # (shingles,)
    # Level 2: the same rolling hash over word hashes, one window of `span` words per shingle.
    hashes = _rolling_hashes(word_hashes, start_word, start_word + span[doc])
    return ShingleSets(hashes, offsets.astype(np.int64))


def hash_shingles(texts: Sequence[str], ngrams: int) -> ShingleSets:
    """The word n-gram hashes of raw texts (normalised here): ``string_hash`` of every shingle of
    ``shingles(normalize_text(text), ngrams)``, for a whole batch in a few numpy passes per block
    of ~1M characters (pure-ASCII texts and the others in separate blocks). The fast path of
    ``find_duplicate_clusters``."""
    if ngrams < 1:
        raise ValueError(f"ngrams must be >= 1, got {ngrams}")
    ascii_texts = [t.isascii() for t in texts]
    parts, order = [], []  # ShingleSets of each block, and the texts (indices) in it
    for is_ascii, codes_of in ((True, ascii_codes), (False, normalized_codes)):
        block, size = [], 0
        for i, text in enumerate(texts):
            if ascii_texts[i] != is_ascii:
                continue
            block.append(i)
            size += len(text)
            if size >= _BLOCK_CHARS or i == len(texts) - 1:
                parts.append(_hash_block(*codes_of([texts[j] for j in block]), ngrams))
                order += block
                block, size = [], 0
        if block:
            parts.append(_hash_block(*codes_of([texts[j] for j in block]), ngrams))
            order += block
    return _in_text_order(parts, order)


def _in_text_order(parts: list[ShingleSets], order: list[int]) -> ShingleSets:
    """Concatenate the blocks' shingle sets and put the texts back in input order."""
    if not parts:
        return ShingleSets(np.zeros(0, dtype=np.uint64), np.zeros(1, dtype=np.int64))
    hashes = np.concatenate([p.hashes for p in parts])
    sizes = np.concatenate([np.diff(p.offsets) for p in parts])  # in block order
    source_start = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    place = np.empty(len(order), dtype=np.int64)
    place[order] = np.arange(len(order))  # text i is block-order entry place[i]
    sizes, source_start = sizes[place], source_start[place]  # now in text order
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    if np.array_equal(place, np.arange(len(order))):
        return ShingleSets(hashes, offsets)
    # Shingle k of text i sits at source_start[i] + (k - offsets[i]) in the block order.
    gather = np.repeat(source_start - offsets[:-1], sizes) + np.arange(offsets[-1])
    return ShingleSets(hashes[gather], offsets)


def shingle_hashes(text: str, ngrams: int) -> UInt64[np.ndarray, " shingles"]:
    """The sorted, distinct shingle hashes of one text.

    >>> text = "to be or not to be"
    >>> sorted(shingle_hashes(text, 2).tolist()) == sorted(string_hash(s) for s in shingles(text, 2))
    True
    """
    return np.unique(hash_shingles([text], ngrams).hashes)
