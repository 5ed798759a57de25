"""Graders for MinHash + LSH fuzzy deduplication.

References here are the test's own: word n-gram sets and their true Jaccard, computed in plain
Python, and datasketch's MinHash as a peer for the Jaccard estimate.
"""


from __future__ import annotations

import random
import re
import unicodedata
from pathlib import Path

import pytest

pytestmark = pytest.mark.core


MIT_LICENSE = """Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


# The same licence with a different copyright holder line, one changed word, other whitespace
# and capitalisation: a near-duplicate.
MIT_VARIANT = "Copyright (c) 2021 Jane Doe\n\n" + MIT_LICENSE.replace(
    "free of charge", "free  of CHARGE"
).replace("substantial portions", "significant portions").replace("\n", " \n")


DISSIMILAR = """The honey bee is a eusocial flying insect within the genus Apis of the bee clade. Bees
are known for their construction of perennial colonial nests from wax, the large size of their
colonies, and their surplus production and storage of honey, distinguishing their hives from a
number of other bee species. Only eight surviving species of honey bees are recognised, with a total
of 43 subspecies, though historically seven to eleven species are recognised."""


def plain_normalize(text: str) -> str:
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if not unicodedata.combining(c))
    text = re.sub(r"[^\w\s]|_", "", text)
    return " ".join(text.split())


def word_ngrams(text: str, n: int) -> set[str]:
    words = plain_normalize(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def true_jaccard(a: str, b: str, n: int) -> float:
    sa, sb = word_ngrams(a, n), word_ngrams(b, n)
    return len(sa & sb) / len(sa | sb)


def write_docs(directory: Path, docs: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in docs.items():
        (directory / name).write_text(text, encoding="utf-8")
        paths.append(directory / name)
    return paths


def dedup(adapters, tmp_path: Path, docs: dict[str, str], out_name="out", order=None, **kwargs) -> set[str]:
    # 32 bands of 4 rows: pairs with J >= 0.85 are LSH candidates with probability > 1 - 1e-9
    params = dict(num_hashes=128, num_bands=32, ngrams=5, jaccard_threshold=0.8) | kwargs
    paths = write_docs(tmp_path / "in", docs)
    if order is not None:
        paths = [paths[i] for i in order]
    out = tmp_path / out_name
    adapters.run_minhash_deduplication(paths, output_directory=out, **params)
    kept = {p.name for p in out.iterdir()}
    for name in kept:  # survivors are copied unchanged, under their own names
        assert (out / name).read_bytes() == (tmp_path / "in" / name).read_bytes()
    return kept


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






@pytest.mark.points(3, problem="minhash_deduplication")
def test_keeps_one_of_two_near_identical_licences_and_the_dissimilar_doc(adapters, tmp_path):
    assert 0.8 <= true_jaccard(MIT_LICENSE, MIT_VARIANT, 5) < 1.0  # the setup really is a near-duplicate
    assert true_jaccard(MIT_LICENSE, DISSIMILAR, 5) == 0.0
    kept = dedup(
        adapters, tmp_path, {"mit.txt": MIT_LICENSE, "mit_variant.txt": MIT_VARIANT, "bees.txt": DISSIMILAR}
    )
    assert "bees.txt" in kept
    assert len(kept & {"mit.txt", "mit_variant.txt"}) == 1


@pytest.mark.points(1, problem="minhash_deduplication")
def test_candidates_below_threshold_are_not_duplicates(adapters, tmp_path):
    # Every fourth word of the licence changed: J ~ 1/3 on bigrams. With 128 bands of one row LSH
    # proposes the pair almost surely (1 - (1 - J)^128), but the verified Jaccard is below the
    # threshold, so both documents must survive: LSH only proposes, the true Jaccard decides.
    words = MIT_LICENSE.split()
    edited = " ".join(f"{w}x" if i % 4 == 0 else w for i, w in enumerate(words))
    assert 0.25 < true_jaccard(MIT_LICENSE, edited, 2) < 0.45
    docs = {"a.txt": MIT_LICENSE, "b.txt": edited}
    kept = dedup(adapters, tmp_path, docs, num_bands=128, ngrams=2, jaccard_threshold=0.5)
    assert kept == {"a.txt", "b.txt"}


@pytest.mark.points(1, problem="minhash_deduplication")
def test_chained_near_duplicates_form_one_cluster(adapters, tmp_path):
    # A ~ B and B ~ C above the threshold, A ~ C below: union-find puts all three in one cluster.
    rng = random.Random(1)
    base = [f"w{rng.randint(0, 10_000)}" for _ in range(400)]
    b_words, c_words = list(base), list(base)
    for i in range(0, 400, 50):
        b_words[i] = c_words[i] = "changed"
    for i in range(25, 400, 50):
        c_words[i] = "again"
    a, b, c = " ".join(base), " ".join(b_words), " ".join(c_words)
    jab, jbc, jac = true_jaccard(a, b, 3), true_jaccard(b, c, 3), true_jaccard(a, c, 3)
    assert jab >= 0.85 and jbc >= 0.85 and jac < 0.85, (jab, jbc, jac)
    kept = dedup(
        adapters,
        tmp_path,
        {"a.txt": a, "b.txt": b, "c.txt": c, "z.txt": DISSIMILAR},
        ngrams=3,
        jaccard_threshold=0.85,
    )
    assert len(kept & {"a.txt", "b.txt", "c.txt"}) == 1
    assert "z.txt" in kept


@pytest.mark.points(3, problem="minhash_deduplication")
def test_many_documents_only_duplicates_removed(adapters, tmp_path):
    rng = random.Random(2)
    docs = {
        f"doc{k:02d}.txt": " ".join(f"t{rng.randint(0, 5000)}" for _ in range(rng.randint(100, 300)))
        for k in range(30)
    }
    for k in range(0, 30, 3):  # a one-word edit of every third document: J >= 0.9 with 5-grams
        words = docs[f"doc{k:02d}.txt"].split()
        words[len(words) // 2] = "EDITED"
        docs[f"dup{k:02d}.txt"] = " ".join(words)
        assert true_jaccard(docs[f"doc{k:02d}.txt"], docs[f"dup{k:02d}.txt"], 5) >= 0.9
    # 32 bands of 4 rows: a pair with J = 0.9 is a candidate with probability 1 - (1 - 0.9^4)^32 > 0.999999
    kept = dedup(adapters, tmp_path, docs, jaccard_threshold=0.7)
    for k in range(30):
        if k % 3 == 0:
            assert len(kept & {f"doc{k:02d}.txt", f"dup{k:02d}.txt"}) == 1, k
        else:
            assert f"doc{k:02d}.txt" in kept, k
    assert len(kept) == 30
