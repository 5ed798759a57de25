"""Normalise text before comparing documents: lowercase, NFD, no accents, no punctuation, single spaces.

Part of the handout's MinHash deduplication (section 2.8): two pages that differ only in case,
accents, punctuation or spacing should have the same word n-grams. The plain version,
``normalize_text_reference``, applies the rules one after the other with a regular expression.
The fast version applies them to each *character* -- ``_normalized_chars`` says what one character
becomes (``"É"`` -> ``"e"``, ``","`` -> nothing, a tab -> a space) -- through one
``str.translate`` pass with a lazily filled table, then collapses whitespace:

    >>> normalize_text("  Café, CRÈME-brûlée!\\n\\tOK ")
    'cafe cremebrulee ok'

Per character is enough, and the graders check it on every Unicode code point: lowercasing is per
character except a final capital sigma (texts with a "Σ" are lowercased whole first), and NFD
decomposes each character on its own, only reordering combining marks, which are dropped anyway.

``normalized_codes`` / ``ascii_codes`` apply the same table to a whole batch of texts at once and
return code points as a numpy array (whitespace left uncollapsed): the input of the vectorised
shingle hashing in ``data.shingles``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_PUNCTUATION = re.compile(r"[^\w\s]|_")
_WHITESPACE = re.compile(r"\s+")


def normalize_text_reference(text: str) -> str:
    """Plain reference: NFD, drop combining marks, drop punctuation, collapse whitespace.

    >>> normalize_text_reference("  Café, CRÈME-brûlée!\\n\\tOK ")
    'cafe cremebrulee ok'
    """
    text = unicodedata.normalize("NFD", text.lower())
    # After NFD an accent is a separate combining mark ("é" -> "e" + U+0301): drop the marks.
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _PUNCTUATION.sub("", text)
    return _WHITESPACE.sub(" ", text).strip()


def _normalized_chars(code: int) -> str | None:
    """What normalisation makes of one character: lowercase, NFD, then drop accents (combining
    marks), punctuation, symbols and ``_``, and turn whitespace into one space. None: nothing left.
    Exactly the reference's rules -- its regex ``\\w`` is ``str.isalnum()`` plus ``_`` and ``\\s`` is
    ``str.isspace()`` -- applied to one character (``"É"`` -> ``"e"``, ``"İ"`` -> ``"i"``, ``","`` -> None).

    Per character is enough: lowercasing is per character except a final capital sigma, NFD
    decomposes each character on its own and only reorders combining marks, which are dropped."""
    kept = []
    for char in unicodedata.normalize("NFD", chr(code).lower()):
        if unicodedata.combining(char) or char == "_" or not (char.isalnum() or char.isspace()):
            continue
        kept.append(" " if char.isspace() else char)
    return "".join(kept) or None  # None, not "": str.translate's ASCII fast path needs it


class _NormalizeTable(dict):
    """The ``str.translate`` table, filled on first sight of each code point (a full table
    would hold all 1.1M code points; a text uses a few hundred)."""

    def __missing__(self, code: int) -> str | None:
        self[code] = _normalized_chars(code)
        return self[code]


_TABLE = _NormalizeTable()


def _lower_final_sigma(text: str) -> str:
    # "Σ" is the one character whose lowercase depends on its neighbours ("ΟΔΟΣ" -> "οδος"):
    # such texts are lowercased whole first (the table maps lowercase letters to themselves).
    return text.lower() if "Σ" in text else text


def normalize_text(text: str) -> str:
    """Lowercase, NFD-normalise, strip accents and punctuation, collapse whitespace: one
    ``str.translate`` pass that does all but the collapsing (same output as
    ``normalize_text_reference``).

    >>> normalize_text("  Café, CRÈME-brûlée!\\n\\tOK ")
    'cafe cremebrulee ok'
    """
    return " ".join(_lower_final_sigma(text).translate(_TABLE).split())


def normalized_codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``normalize_text`` for a batch, on code points, with the same per-character table: the
    kept characters of all texts (whitespace as 32; each text followed by a space so that no word
    crosses two texts) and the end of each text in that array."""
    texts = [_lower_final_sigma(t) for t in texts]
    joined = " ".join(texts) + " "
    codes = np.frombuffer(joined.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    ends = np.cumsum([len(t) + 1 for t in texts], dtype=np.int64)  # exclusive, in `codes`
    # Row of the lookup table for every character: ASCII is its own row, the batch's few distinct
    # other code points get rows 128, 129, ... (each looked up in the table once, not per use).
    rows, table = codes, _ASCII_TABLE
    wide = np.flatnonzero(codes > 127)
    if wide.size:
        distinct, where = np.unique(codes[wide], return_inverse=True)
        rows = codes.copy()
        rows[wide] = 128 + where
        table = _output_table([_TABLE[int(c)] for c in distinct])
    if table.shape[1] == 1:  # every character becomes at most one: a lookup, then drop the zeros
        mapped = np.take(table[:, 0], rows)
        kept = np.flatnonzero(mapped)  # 0 marks "deleted" (NUL itself is deleted: not alphanumeric)
        return mapped[kept], np.searchsorted(kept, ends)
    # Some character becomes two or three (a Hangul syllable -> its jamo): repeat each input
    # row by its output length, then take output character 0, 1 or 2 of that row.
    lengths = (table[rows] != 0).sum(axis=1)  # (chars,) output characters per input character
    out_rows = np.repeat(rows, lengths)
    position = np.arange(out_rows.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return table[out_rows, position], np.cumsum(lengths)[ends - 1]


def _output_table(outputs: list[str | None]) -> np.ndarray:
    """Rows of output code points, 0-padded: the ASCII rows, then one per string of ``outputs``."""
    width = max([1] + [len(o or "") for o in outputs])
    table = np.zeros((128 + len(outputs), width), dtype=np.uint32)
    table[:128, :1] = _ASCII_TABLE
    for row, output in enumerate(outputs, start=128):
        table[row, : len(output or "")] = [ord(c) for c in output or ""]
    return table


_ASCII_TABLE = np.array([[ord(_TABLE[c] or "\0")] for c in range(128)], dtype=np.uint32)  # (128, 1)


def ascii_codes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``normalized_codes`` for pure-ASCII texts, four times faster: ``bytes.translate`` with the
    ASCII rows of the same table (lowercase, delete punctuation, whitespace to space) in C."""
    pieces = [t.encode("ascii").translate(_ASCII_BYTES, _ASCII_DELETED) for t in texts]
    ends = np.cumsum([len(p) + 1 for p in pieces], dtype=np.int64)
    return np.frombuffer(b" ".join(pieces) + b" ", dtype=np.uint8), ends


_ASCII_BYTES = bytes(_ASCII_TABLE[:, 0].tolist()) + bytes(128)  # byte -> its normalised byte
_ASCII_DELETED = bytes(c for c in range(128) if _TABLE[c] is None)
