"""Graders for exact line deduplication: a line seen more than once anywhere in the
corpus is removed from every file; outputs keep the input names."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


# The plain reference and the file helpers are the core graders' (one copy).
from tests.data.core.test_dedup import reference_line_dedup, run_and_read, split_lines, write_files  # noqa: E402, F401


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
