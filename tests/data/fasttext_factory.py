"""Write tiny supervised fastText ``.bin`` models by hand, so the graders can exercise the code
paths that load a *user-supplied* fastText file (Dolma's Jigsaw classifiers, ``lid.176.bin``)
without downloading anything.

The model is a bag of words with no subwords and no word n-grams: each known word has an input
vector, a text's hidden vector is the mean of its known words' vectors, and the label
probabilities are ``softmax(output @ hidden)``. That is exactly what fastText computes for
``-loss softmax -minn 0 -maxn 0 -wordNgrams 1``, so the tests can compute the expected
probabilities themselves (``expected_probabilities``).

File layout (fastText 0.9, format version 12), all little-endian: magic and version (int32);
the Args (12 int32 and one float64); the Dictionary (size, nwords, nlabels as int32, ntokens and
pruneidx_size as int64, then per entry a NUL-terminated word, an int64 count and an int8 type,
0 = word, 1 = label); a bool "quantized" byte and the input matrix (int64 rows, int64 cols,
float32 data); a bool byte and the output matrix.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

MAGIC, VERSION = 793712314, 12
LOSS_SOFTMAX, MODEL_SUPERVISED = 3, 3


def write_fasttext_model(
    path: str | Path, word_vectors: dict[str, list[float]], label_vectors: dict[str, list[float]]
) -> Path:
    """A supervised fastText model: ``word_vectors`` are input rows, ``label_vectors`` output rows.

    Labels are given without the ``__label__`` prefix; every vector has the same length (dim).
    """
    dim = len(next(iter(word_vectors.values())))
    assert all(len(v) == dim for v in [*word_vectors.values(), *label_vectors.values()])
    out = bytearray(struct.pack("<ii", MAGIC, VERSION))
    # Args: dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate, then t.
    out += struct.pack("<12i", dim, 5, 5, 1, 5, 1, LOSS_SOFTMAX, MODEL_SUPERVISED, 0, 0, 0, 100)
    out += struct.pack("<d", 1e-4)
    words, labels = list(word_vectors), [f"__label__{label}" for label in label_vectors]
    out += struct.pack("<iii", len(words) + len(labels), len(words), len(labels))
    out += struct.pack("<qq", len(words) + len(labels), -1)  # ntokens, pruneidx_size (-1: not pruned)
    for entry, kind in [(w, 0) for w in words] + [(lab, 1) for lab in labels]:
        out += entry.encode("utf-8") + b"\x00" + struct.pack("<qb", 1, kind)
    for rows in (list(word_vectors.values()), list(label_vectors.values())):
        out += b"\x00"  # not quantized
        out += struct.pack("<qq", len(rows), dim)
        out += struct.pack(f"<{len(rows) * dim}f", *[x for row in rows for x in row])
    path = Path(path)
    path.write_bytes(bytes(out))
    return path


def expected_probabilities(
    text: str, word_vectors: dict[str, list[float]], label_vectors: dict[str, list[float]]
) -> dict[str, float]:
    """What fastText predicts for ``text`` with this model: label -> probability."""
    known = [word_vectors[w] for w in text.split() if w in word_vectors]
    dim = len(next(iter(word_vectors.values())))
    hidden = [sum(v[i] for v in known) / len(known) for i in range(dim)]
    logits = {label: sum(a * b for a, b in zip(row, hidden)) for label, row in label_vectors.items()}
    top = max(logits.values())
    exp = {label: math.exp(z - top) for label, z in logits.items()}
    total = sum(exp.values())
    return {label: e / total for label, e in exp.items()}
