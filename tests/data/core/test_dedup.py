"""Graders for exact line deduplication: a line seen more than once anywhere in the
corpus is removed from every file; outputs keep the input names."""


from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.core


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


@pytest.mark.points(2, problem="exact_deduplication")
def test_identical_files_lose_every_line(adapters, tmp_path):
    page = b"Home | About | Contact\nWelcome to my page.\nCopyright 2024 Example Inc.\n"
    result = run_and_read(adapters, tmp_path, {"a.txt": page, "b.txt": page})
    assert result == {"a.txt": b"", "b.txt": b""}


@pytest.mark.points(2, problem="exact_deduplication")
def test_shared_boilerplate_removed_unique_lines_kept(adapters, tmp_path):
    contents = {
        "doc1.txt": b"Home | About | Contact\nThe first article talks about bees.\nBees make honey.\nCopyright 2024\n",
        "doc2.txt": b"Home | About | Contact\nThe second article talks about ants.\nCopyright 2024\n",
        "doc3.txt": b"Nothing shared here.\nAt all.\n",
    }
    result = run_and_read(adapters, tmp_path, contents)
    assert result["doc1.txt"] == b"The first article talks about bees.\nBees make honey.\n"
    assert result["doc2.txt"] == b"The second article talks about ants.\n"
    assert result["doc3.txt"] == contents["doc3.txt"]
    assert result == reference_line_dedup(contents)


@pytest.mark.points(1, problem="exact_deduplication")
def test_repeat_inside_one_file_counts(adapters, tmp_path):
    contents = {"only.txt": b"alpha\nbeta\nalpha\ngamma\n", "other.txt": b"delta\n"}
    result = run_and_read(adapters, tmp_path, contents)
    assert result == {"only.txt": b"beta\ngamma\n", "other.txt": b"delta\n"}


@pytest.mark.points(2, problem="exact_deduplication")
def test_random_corpus_matches_reference(adapters, tmp_path):
    import random

    rng = random.Random(6)
    vocabulary = [f"line {i}".encode() for i in range(60)]
    contents = {
        f"f{k:02d}.txt": b"".join(rng.choice(vocabulary) + b"\n" for _ in range(rng.randint(0, 40)))
        for k in range(12)
    }
    assert run_and_read(adapters, tmp_path, contents) == reference_line_dedup(contents)
