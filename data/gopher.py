"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights
from Training Gopher", appendix A.1.1; handout section 2.6).

A few cheap heuristics remove much of the web's non-prose: navigation menus, keyword lists, code
dumps, truncated teasers. A document is **kept** only if all hold:

1. it has between 50 and 100,000 words (inclusive);
2. its mean word length is between 3 and 10 characters (inclusive);
3. at most 30% of its lines end with an ellipsis ("..." or "…");
4. at least 80% of its words contain at least one alphabetic character.

``gopher_quality_reason`` returns the first rule that fails (in the order above) or ``None``;
``gopher_quality_filter`` is ``reason is None``.

>>> gopher_quality_reason("too short")
'too few words'
>>> gopher_quality_filter(" ".join(["word"] * 60))
True

Simplifications: words are whitespace-separated tokens (the paper tokenizes; punctuation glued to
a word counts towards its length here), and lines are the non-blank lines of the text. Fractions
are compared exactly (as rationals), so 3 ellipsis lines out of 10 is exactly 30% and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

ELLIPSES = ("...", "…")


@dataclass(frozen=True)
class GopherConfig:
    min_words: int = 50  # fewer words than this: drop
    max_words: int = 100_000  # more words than this: drop
    min_mean_word_length: float = 3  # characters; a shorter mean: drop
    max_mean_word_length: float = 10  # characters; a longer mean: drop
    max_ellipsis_line_fraction: float = 0.3  # more lines ending in an ellipsis than this: drop
    min_alphabetic_word_fraction: float = 0.8  # fewer words with a letter than this: drop


def _exact(x: float) -> Fraction:
    return Fraction(str(x))  # "0.3" -> 3/10 exactly, not the binary float 0.299999...


def gopher_quality_reason(text: str, config: GopherConfig = GopherConfig()) -> str | None:
    """The first Gopher rule ``text`` breaks, or ``None`` if it passes them all."""
    if not isinstance(text, str):
        raise ValueError(f"gopher_quality_reason expects str, got {type(text).__name__}")
    words = text.split()
    if len(words) < config.min_words:
        return "too few words"
    if len(words) > config.max_words:
        return "too many words"
    mean_length = Fraction(sum(len(w) for w in words), len(words))
    if mean_length < _exact(config.min_mean_word_length):
        return "mean word length too short"
    if mean_length > _exact(config.max_mean_word_length):
        return "mean word length too long"
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    ellipsis_lines = sum(1 for line in lines if line.endswith(ELLIPSES))
    if Fraction(ellipsis_lines, len(lines)) > _exact(config.max_ellipsis_line_fraction):
        return "too many ellipsis lines"
    alphabetic = sum(1 for w in words if any(ch.isalpha() for ch in w))
    if Fraction(alphabetic, len(words)) < _exact(config.min_alphabetic_word_fraction):
        return "too few alphabetic words"
    return None


def gopher_quality_filter(text: str, config: GopherConfig = GopherConfig()) -> bool:
    """True if ``text`` passes every Gopher rule (keep it), False otherwise."""
    return gopher_quality_reason(text, config) is None
