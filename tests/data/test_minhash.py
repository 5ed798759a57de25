"""Graders for MinHash + LSH fuzzy deduplication.

References here are the test's own: word n-gram sets and their true Jaccard, computed in plain
Python, and datasketch's MinHash as a peer for the Jaccard estimate.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

# The documents, the plain Jaccard reference and the helpers are the core graders' (one copy).
from tests.data.core.test_minhash import (  # noqa: E402, F401
    DISSIMILAR,
    MIT_LICENSE,
    MIT_VARIANT,
    dedup,
    plain_normalize,
    true_jaccard,
    word_ngrams,
    write_docs,
)


def test_normalize_text(adapters):
    assert adapters.run_normalize_text("  Héllo,\tWORLD!!  Çà   va?\n") == "hello world ca va"
    assert adapters.run_normalize_text("naïve café — résumé") == "naive cafe resume"
    assert adapters.run_normalize_text("...") == ""


def test_survivor_is_deterministic(adapters, tmp_path):
    docs = {f"copy{i}.txt": MIT_LICENSE.replace("Software", f"Software{'!' * i}", 1) for i in range(6)}
    docs["bees.txt"] = DISSIMILAR
    first = dedup(adapters, tmp_path, docs, out_name="run1")
    second = dedup(adapters, tmp_path, docs, out_name="run2")
    assert first == second
    assert len(first) == 2 and "bees.txt" in first


def test_bad_band_count_is_an_error(adapters, tmp_path):
    paths = write_docs(tmp_path / "in", {"a.txt": "one two three"})
    with pytest.raises(ValueError):
        adapters.run_minhash_deduplication(paths, 100, 7, 5, 0.8, tmp_path / "out")


@pytest.mark.parametrize("num_words", [0, 1, 4, 5, 6, 97, 1500, 3000])
def test_vectorised_signature_matches_plain_reference(adapters, num_words):
    rng = random.Random(num_words)
    text = " ".join(rng.choice(["alpha", "Beta,", "gämma", "δέλτα", "e", "x" * 40]) for _ in range(num_words))
    fast = np.asarray(adapters.run_minhash_signatures([text], 24, 5, seed=3))
    assert fast.shape == (1, 24)
    reference = adapters.run_minhash_signature_reference(text, 24, 5, seed=3)
    assert fast[0].tolist() == list(reference)


def test_batched_signatures_equal_one_at_a_time(adapters):
    rng = random.Random(4)
    texts = [" ".join(f"w{rng.randint(0, 300)}" for _ in range(rng.randint(0, 900))) for _ in range(25)]
    texts[3:3] = [
        "",
        "one two",
        "!!! ...",
        "Ünïcödé wörds, ñ and 中文 text here, five six",
    ]  # empty and short ones
    batched = np.asarray(adapters.run_minhash_signatures(texts, 64, 5, seed=1))
    single = np.stack([np.asarray(adapters.run_minhash_signatures([t], 64, 5, seed=1))[0] for t in texts])
    np.testing.assert_array_equal(batched, single)
    other_seed = np.asarray(adapters.run_minhash_signatures(texts[:3], 64, 5, seed=2))
    assert not np.array_equal(other_seed, batched[:3])


def test_signature_agreement_estimates_jaccard_like_datasketch(adapters):
    import datasketch  # the real peer, in the `data` extra

    rng = random.Random(5)
    base = [f"w{rng.randint(0, 100_000)}" for _ in range(600)]
    num_hashes = 256
    for fraction in (0.02, 0.1, 0.3):
        edited = [w if rng.random() > fraction else "x" for w in base]
        a, b = " ".join(base), " ".join(edited)
        truth = true_jaccard(a, b, 5)
        sig = np.asarray(adapters.run_minhash_signatures([a, b], num_hashes, 5, seed=7))
        ours = float(np.mean(sig[0] == sig[1]))
        peers = [datasketch.MinHash(num_perm=num_hashes, seed=7) for _ in range(2)]
        for peer, text in zip(peers, (a, b), strict=True):
            peer.update_batch([s.encode() for s in word_ngrams(text, 5)])
        theirs = peers[0].jaccard(peers[1])
        # std of the estimate is sqrt(J(1-J)/256) <= 0.032: 0.1 is > 3 sigma
        assert abs(ours - truth) < 0.1, (fraction, ours, truth)
        assert abs(ours - theirs) < 0.15, (fraction, ours, theirs)


def test_lsh_bands(adapters):
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(5, 12), dtype=np.uint64).astype(np.uint32)
    sig[1] = sig[0]
    sig[1, [0, 4, 8]] += 1  # differs from row 0 in one entry of every band (3 bands of 4 rows)
    sig[2, 8:12] = sig[0, 8:12]  # equals row 0 in exactly the last band
    sig[3] = sig[4]  # identical rows
    assert adapters.run_lsh_candidate_pairs(sig, 3) == [(0, 2), (3, 4)]
    assert adapters.run_lsh_candidate_pairs(sig, 12) == [(0, 1), (0, 2), (1, 2), (3, 4)]  # one row per band
    with pytest.raises(ValueError):
        adapters.run_lsh_candidate_pairs(sig, 5)


# Characters where a table-driven normaliser can go wrong: final and medial sigma, a capital whose
# lowercase is two characters (İ), combining marks out of canonical order, Hangul syllables (NFD
# makes three characters of one), ligatures, odd whitespace (\x1c is whitespace to str.isspace),
# underscores, digits, CJK, a lone surrogate.
TRICKY = [
    "ΟΔΟΣ",
    "Σ",
    "ΣΑΣ ",
    "İstanbul",
    "a\u0301\u0316",
    "e\u0316\u0301",
    "한국어",
    "ﬁne",
    "ǅ",
    "Å",
    "\u3000",
    "\x1c",
    "\t",
    "\n\n",
    "a_b",
    "__",
    "42",
    "٣",
    "中文",
    "\ud800",
    "naïve",
    "CAFÉ",
    "—",
    "...",
    "x" * 30,
    "don't",
    "e-mail",
]


def tricky_text(rng: random.Random, max_pieces: int = 80) -> str:
    pieces = [
        rng.choice(TRICKY) + rng.choice(["", " ", "  ", "\n"]) for _ in range(rng.randint(0, max_pieces))
    ]
    return "".join(pieces)


@pytest.mark.extension
def test_fast_normalize_matches_the_plain_version_on_tricky_text(adapters):
    rng = random.Random(11)
    for _ in range(300):
        text = tricky_text(rng)
        assert adapters.run_normalize_text(text) == plain_normalize(text), repr(text)


@pytest.mark.slow
@pytest.mark.extension
def test_fast_normalize_matches_the_plain_version_on_every_code_point(adapters):
    for start in range(0, 0x110000, 0x8000):  # every code point, alone between spaces and run together
        block = [chr(c) for c in range(start, start + 0x8000)]
        for text in (" ".join(block), "".join(block)):
            assert adapters.run_normalize_text(text) == plain_normalize(text), hex(start)


def check_against_reference(adapters, texts, ngrams_values):
    for ngrams in ngrams_values:
        fast = np.asarray(adapters.run_minhash_signatures(texts, 16, ngrams, seed=5))
        assert fast.shape == (len(texts), 16)
        for text, row in zip(texts, fast, strict=True):
            assert row.tolist() == list(adapters.run_minhash_signature_reference(text, 16, ngrams, seed=5))


@pytest.mark.extension
def test_fast_signatures_match_the_plain_reference_on_tricky_batches(adapters):
    rng = random.Random(12)
    # ASCII and non-ASCII texts interleaved, and an empty one.
    texts = [tricky_text(rng) if i % 3 else f"plain ascii text number {i} with words" for i in range(30)]
    texts[7] = ""
    check_against_reference(adapters, texts, (1, 3, 5))


@pytest.mark.slow
@pytest.mark.extension
def test_fast_signatures_match_the_plain_reference_on_a_long_document(adapters):
    rng = random.Random(13)
    long_text = " ".join(f"w{rng.randint(0, 50_000)}" for _ in range(20_000))
    check_against_reference(adapters, ["short one", long_text, tricky_text(rng)], (5,))
