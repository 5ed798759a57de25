"""Atomic file writing: a file is either its old version or its complete new one, never half-written.

Write to a temporary file in the same directory, then ``os.replace`` it onto the target: on one
filesystem the rename is atomic, so a reader (or a resumed run after a crash) sees the old file or the
new one. Checkpoints, token arrays, the built-in corpus and the metrics log all write this way.

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_write(path, "w", encoding="utf-8") as f:
    ...     _ = f.write("complete")
    >>> path.read_text()
    'complete'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write"]


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write (with any library); renamed onto
    ``path`` when the block ends normally, deleted when it raises. Creates ``path``'s directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as the target: a rename across filesystems would be a copy, not atomic.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(name)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)  # only still there if the block raised


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` for writing, atomically: the data goes to a temporary file that is flushed
    to disk (fsync) and renamed onto ``path`` only once the block has finished without an error."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())  # on disk before the rename, so a power cut cannot leave an empty file
