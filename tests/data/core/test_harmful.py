"""Graders for the NSFW / toxic-speech classifiers: obvious cases with the offline default, the
default's scores against the peer package it wraps, thresholds and pluggable backends."""


from __future__ import annotations

import pytest

pytestmark = pytest.mark.core


CLEAN = [
    "Thank you for the thoughtful review, I will fix the typo in section two.",
    "The committee met on Tuesday to discuss the new library budget.",
    "Preheat the oven to 200 degrees and bake the bread for forty minutes.",
]


PROFANE = [
    "you are a fucking idiot and a worthless piece of shit",
    "shut the fuck up you stupid bitch",
]


SEXUAL = ["hot naked sex pics xxx porn free nude videos"]


class FixedBackend:
    """A stand-in classifier with a known probability, to test thresholds and plumbing."""

    def __init__(self, p):
        self.p = p
        self.seen = []

    def harmful_probability(self, text):
        self.seen.append(text)
        return self.p


@pytest.mark.points(1, problem="harmful_content")
@pytest.mark.parametrize("text", CLEAN)
def test_clean_text(adapters, text):
    label, score = adapters.run_classify_nsfw(text)
    assert label == "non-nsfw" and 0.5 <= score <= 1.0
    label, score = adapters.run_classify_toxic_speech(text)
    assert label == "non-toxic" and 0.5 <= score <= 1.0


@pytest.mark.points(1, problem="harmful_content")
@pytest.mark.parametrize("text", PROFANE)
def test_toxic_text(adapters, text):
    label, score = adapters.run_classify_toxic_speech(text)
    assert label == "toxic" and 0.5 <= score <= 1.0


@pytest.mark.points(1, problem="harmful_content")
@pytest.mark.parametrize("text", PROFANE + SEXUAL)
def test_nsfw_text(adapters, text):
    label, score = adapters.run_classify_nsfw(text)
    assert label == "nsfw" and 0.5 <= score <= 1.0
