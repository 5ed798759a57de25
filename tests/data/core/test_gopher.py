"""Graders for the Gopher quality rules, at each threshold (inclusive bounds keep the document)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.core


def words(n, word="word"):
    return " ".join([word] * n)


def check(adapters, text, keep):
    assert bool(adapters.run_gopher_quality_filter(text)) is keep


def lines_with_ellipses(num_lines, num_ellipsis, mark="..."):
    out = []
    for i in range(num_lines):
        line = "the quick brown fox jumps over the lazy dog"
        out.append(line + mark if i < num_ellipsis else line + ".")
    return "\n".join(out)


@pytest.mark.points(1, problem="gopher_quality_filters")
@pytest.mark.parametrize("n, keep", [(0, False), (1, False), (49, False), (50, True), (51, True)])
def test_minimum_word_count(adapters, n, keep):
    check(adapters, words(n), keep)


@pytest.mark.points(1, problem="gopher_quality_filters")
@pytest.mark.parametrize("n, keep", [(99_999, True), (100_000, True), (100_001, False)])
def test_maximum_word_count(adapters, n, keep):
    check(adapters, words(n), keep)


@pytest.mark.points(1, problem="gopher_quality_filters")
@pytest.mark.parametrize(
    "text, keep",
    [
        (words(60, "abc"), True),  # mean exactly 3
        (words(59, "abc") + " ab", False),  # mean 179/60 < 3
        (words(59, "abc") + " abcd", True),
        (words(60, "ab"), False),
        (words(60, "abcdefghij"), True),  # mean exactly 10
        (words(59, "abcdefghij") + " abcdefghijk", False),  # mean 601/60 > 10
        (words(59, "abcdefghij") + " abcdefghi", True),
    ],
    ids=["mean-3", "mean-2.98", "mean-3.02", "mean-2", "mean-10", "mean-10.02", "mean-9.98"],
)
def test_mean_word_length_bounds(adapters, text, keep):
    check(adapters, text, keep)


@pytest.mark.points(1, problem="gopher_quality_filters")
@pytest.mark.parametrize(
    "num_lines, num_ellipsis, keep",
    [(10, 0, True), (10, 3, True), (10, 4, False), (20, 6, True), (20, 7, False), (10, 10, False)],
)
def test_ellipsis_line_fraction(adapters, num_lines, num_ellipsis, keep):
    check(adapters, lines_with_ellipses(num_lines, num_ellipsis), keep)


@pytest.mark.points(1, problem="gopher_quality_filters")
@pytest.mark.parametrize("alphabetic, keep", [(100, True), (81, True), (80, True), (79, False), (50, False)])
def test_alphabetic_word_fraction(adapters, alphabetic, keep):
    text = " ".join(["word"] * alphabetic + ["1234"] * (100 - alphabetic))
    check(adapters, text, keep)


@pytest.mark.points(1, problem="gopher_quality_filters")
def test_real_prose_passes_and_junk_fails(adapters):
    prose = (
        "The river valley was quiet in the early morning. Farmers walked slowly to their fields, and "
        "children carried water from the old stone well near the church before school began. Later, "
        "the market square filled with traders selling bread, cheese and fresh vegetables from the hills. "
        "By noon the heat had driven everyone into the shade of the chestnut trees along the river."
    )
    assert len(prose.split()) >= 50
    check(adapters, prose, True)
    menu = "\n".join(["Home | About | Contact | 2024 | 12 | 34 | 56 | 78"] * 10)
    check(adapters, menu, False)
