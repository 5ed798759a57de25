"""Graders for exact line deduplication: a line seen more than once anywhere in the
corpus is removed from every file; outputs keep the input names."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def split_lines(text: bytes) -> list[bytes]:
    """Lines split on b"\\n" only, each keeping its newline (the last one may have none)."""
    pieces = text.split(b"\n")
    lines = [piece + b"\n" for piece in pieces[:-1]]
    return lines + ([pieces[-1]] if pieces[-1] else [])


def reference_line_dedup(contents: dict[str, bytes]) -> dict[str, bytes]:
    """Plain reference: count lines (without their newline) over all files, keep count == 1."""
    counts = Counter(line.rstrip(b"\n") for text in contents.values() for line in split_lines(text))
    return {
        name: b"".join(line for line in split_lines(text) if counts[line.rstrip(b"\n")] == 1)
        for name, text in contents.items()
    }


def write_files(directory: Path, contents: dict[str, bytes]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in contents.items():
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def run_and_read(adapters, tmp_path: Path, contents: dict[str, bytes]) -> dict[str, bytes]:
    inputs = write_files(tmp_path / "in", contents)
    out = tmp_path / "out"
    adapters.run_exact_line_deduplication(inputs, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(contents), "outputs must keep the input file names"
    return {name: (out / name).read_bytes() for name in contents}


def test_last_line_without_newline_and_non_utf8_bytes(adapters, tmp_path):
    contents = {
        "latin1.txt": "caf\u00e9 cr\u00e8me\nshared line\n".encode("latin-1") + b"\xff\xfe binary-ish\n",
        "tail.txt": b"first\nshared line",  # the repeat is the last line, without a newline
    }
    result = run_and_read(adapters, tmp_path, contents)
    assert result["latin1.txt"] == "caf\u00e9 cr\u00e8me\n".encode("latin-1") + b"\xff\xfe binary-ish\n"
    assert result["tail.txt"] == b"first\n"


def test_missing_input_is_a_clear_error(adapters, tmp_path):
    with pytest.raises(FileNotFoundError):
        adapters.run_exact_line_deduplication([tmp_path / "nope.txt"], tmp_path / "out")
