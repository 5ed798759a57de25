"""Graders for the atomic-write helper that checkpoints, token arrays, the corpus and the metrics log use."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extension


def test_complete_write_replaces_the_file(adapters, tmp_path):
    path = tmp_path / "deeper" / "out.txt"  # the directory is created
    with adapters.atomic_write(path, "w", encoding="utf-8") as f:
        f.write("new")
    assert path.read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.txt"]  # no temporary left behind


def test_failed_write_keeps_the_old_file_and_leaves_nothing(adapters, tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), adapters.atomic_write(path) as f:
        f.write(b"half of the new")
        assert path.read_bytes() == b"old"  # readers never see a partial file
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
