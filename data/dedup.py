"""Exact line deduplication: drop every line that occurs more than once anywhere in a corpus.

Handout section "Deduplication / exact line deduplication". Boilerplate that repeats across web
pages -- cookie banners, navigation menus, copyright footers -- shows up as *identical lines* in
many documents. The rule is deliberately blunt: a line that appears two or more times anywhere in
the corpus (in one file or across files) is removed from every file; a line seen exactly once stays.

Two passes over the files:

1. hash every line to 64 bits and count the hashes (memory is 8 bytes per line, never the text);
2. re-read each file and write only the lines whose hash was counted once.

Worked example (two files)::

    a.txt: "hello\\nshared footer\\nunique a\\n"      ->  "hello\\nunique a\\n"
    b.txt: "shared footer\\nunique b\\n"              ->  "unique b\\n"

``repeated_line_hashes`` and ``remove_repeated_lines`` apply the same rule to documents held in
memory (the pipeline's stage 2); there blank lines -- paragraph breaks -- are not counted.

Simplifications: lines are compared as raw bytes (no decoding, so non-UTF-8 files are fine) with the
trailing line ending (``\\n`` or ``\\r\\n``) ignored for the comparison but kept in the output; blank
lines are lines too, so repeated blank lines are removed like any other repeated line; a 64-bit hash
collision between two different lines (probability ~ n^2 / 2^65) would wrongly drop both.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ExactDedupStats:
    """What :func:`exact_line_deduplication` did, for reports and tests."""

    files: int  # number of input (and output) files
    lines_in: int  # lines read over all files
    lines_out: int  # lines written (each occurred exactly once in the corpus)
    unique_lines: int  # distinct line hashes in the corpus
    bytes_in: int
    bytes_out: int


def line_key(line: bytes) -> int:
    """The 64-bit identity of a line: blake2b of its bytes without the line ending.

    >>> line_key(b"hello\\n") == line_key(b"hello") == line_key(b"hello\\r\\n")
    True
    """
    content = line.rstrip(b"\r\n")  # the same line with LF, CRLF or no ending is one line
    return int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "little")


def _iter_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        yield from handle  # binary mode splits on b"\n" and keeps it


def _line_hashes(path: Path) -> np.ndarray:
    """One uint64 per line of ``path`` (pass 1)."""
    return np.fromiter((line_key(line) for line in _iter_lines(path)), dtype=np.uint64)


def input_and_output_paths(
    input_files: Sequence[str | os.PathLike], output_directory: str | os.PathLike, caller: str
) -> tuple[list[Path], list[Path]]:
    """The inputs as paths (each must be a file; ``caller`` names the function in the error) and
    ``output_directory / name`` for each, the directory created. Shared by both file-level dedups."""
    paths = [Path(f) for f in input_files]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{caller}: input file not found: {path}")
    output_directory = Path(output_directory)
    output_directory.mkdir(parents=True, exist_ok=True)
    return paths, output_paths(paths, output_directory)


def output_paths(input_files: Sequence[Path], output_directory: Path) -> list[Path]:
    """``output_directory / name`` for each input; two inputs with the same name are an error
    because the outputs keep the input names."""
    names = [Path(f).name for f in input_files]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(
                f"two input files share the name {name!r}; outputs keep input names, so names must be unique"
            )
        seen.add(name)
    return [Path(output_directory) / name for name in names]


def write_atomically(path: Path, chunks: Iterable[bytes]) -> int:
    """Write ``chunks`` to a temporary file next to ``path``, then rename it into place, so a
    crash never leaves a half-written ``path``. Returns the number of bytes written."""
    path = Path(path)
    # data does not import basics, so this is its own copy of basics.files' pattern: same directory
    # (a rename across filesystems is a copy, not atomic), hidden name, os.replace at the end.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    written = 0
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                written += len(chunk)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return written


def repeated_line_hashes(documents: Iterable[str], skip_blank: bool = True) -> np.ndarray:
    """Sorted ``line_key`` hashes of the lines that occur more than once over ``documents``
    (strings split on newlines) -- pass 1 of the rule, for the pipeline's in-memory documents.
    With ``skip_blank`` blank lines (paragraph breaks) are never counted as repeats."""
    hashes = np.fromiter(
        (
            line_key(line.encode("utf-8", errors="surrogatepass"))
            for text in documents
            for line in text.split("\n")
            if not (skip_blank and not line.strip())
        ),
        dtype=np.uint64,
    )
    unique, counts = np.unique(hashes, return_counts=True)
    return unique[counts > 1]  # sorted: np.isin in pass 2 searches it


def remove_repeated_lines(text: str, repeated: np.ndarray, skip_blank: bool = True) -> tuple[str, int]:
    """Pass 2 for one document: ``text`` without the lines whose hash is in ``repeated`` (sorted),
    and how many lines were removed."""
    lines = text.split("\n")
    keys = np.fromiter(
        (line_key(line.encode("utf-8", errors="surrogatepass")) for line in lines), dtype=np.uint64
    )
    drop = np.isin(keys, repeated)  # (lines,) True where the line occurs elsewhere in the corpus
    if skip_blank:
        drop &= np.array([bool(line.strip()) for line in lines])
    kept = [line for line, d in zip(lines, drop.tolist(), strict=True) if not d]
    return "\n".join(kept), int(drop.sum())


def exact_line_deduplication(
    input_files: Sequence[str | os.PathLike], output_directory: str | os.PathLike
) -> ExactDedupStats:
    """Rewrite each input file into ``output_directory`` (same file name) keeping only the lines
    that occur exactly once in the whole corpus. Returns counts of what was kept."""
    paths, outputs = input_and_output_paths(input_files, output_directory, "exact_line_deduplication")

    # Pass 1: count every line hash over the corpus. np.unique on the concatenated hashes keeps the
    # memory at 8 bytes per line whatever the line lengths.
    per_file = [_line_hashes(path) for path in paths]
    all_hashes = np.concatenate(per_file) if per_file else np.zeros(0, dtype=np.uint64)
    unique, counts = np.unique(all_hashes, return_counts=True)
    repeated = unique[counts > 1]  # sorted, so np.isin below is a binary search

    # Pass 2: keep a line iff its hash is not among the repeated ones.
    lines_out = bytes_in = bytes_out = 0
    for path, hashes, output in zip(paths, per_file, outputs, strict=True):
        keep = ~np.isin(hashes, repeated, assume_unique=False)
        lines_out += int(keep.sum())
        bytes_in += path.stat().st_size
        kept_lines = (line for line, k in zip(_iter_lines(path), keep.tolist(), strict=True) if k)
        bytes_out += write_atomically(output, kept_lines)
    return ExactDedupStats(
        files=len(paths),
        lines_in=int(all_hashes.size),
        lines_out=lines_out,
        unique_lines=int(unique.size),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
    )
