"""Graders for the Gopher quality rules, at each threshold (inclusive bounds keep the document)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def words(n, word="word"):
    return " ".join([word] * n)


def check(adapters, text, keep):
    assert adapters.run_gopher_quality_filter(text) is keep
    reason = adapters.run_gopher_quality_reason(text)
    if keep:
        assert reason is None
    else:
        assert isinstance(reason, str) and reason


def lines_with_ellipses(num_lines, num_ellipsis, mark="..."):
    out = []
    for i in range(num_lines):
        line = "the quick brown fox jumps over the lazy dog"
        out.append(line + mark if i < num_ellipsis else line + ".")
    return "\n".join(out)


def test_unicode_ellipsis_counts(adapters):
    check(adapters, lines_with_ellipses(10, 4, mark="…"), False)
    check(adapters, lines_with_ellipses(10, 3, mark="…"), True)


def test_ellipsis_in_the_middle_of_a_line_does_not_count(adapters):
    text = "\n".join(["wait... the quick brown fox jumps over the lazy dog."] * 10)
    check(adapters, text, True)


def test_words_with_one_letter_count_as_alphabetic(adapters):
    text = " ".join(["a1b2"] * 50 + ["3.14"] * 10)  # 50/60 = 83% have a letter
    check(adapters, text, True)


