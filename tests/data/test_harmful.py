"""Graders for the NSFW / toxic-speech classifiers: obvious cases with the offline default, the
default's scores against the peer package it wraps, thresholds and pluggable backends."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

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


def test_default_backend_matches_alt_profanity_check(adapters):
    from profanity_check import predict_prob  # the peer the offline default wraps

    for text in CLEAN + PROFANE + SEXUAL:
        p = float(predict_prob([text])[0])
        label, score = adapters.run_classify_toxic_speech(text)
        expected = ("toxic", p) if p >= 0.5 else ("non-toxic", 1.0 - p)
        assert label == expected[0]
        assert score == pytest.approx(expected[1], abs=1e-9)


class FixedBackend:
    """A stand-in classifier with a known probability, to test thresholds and plumbing."""

    def __init__(self, p):
        self.p = p
        self.seen = []

    def harmful_probability(self, text):
        self.seen.append(text)
        return self.p


@pytest.mark.parametrize(
    "run, positive, negative",
    [("run_classify_nsfw", "nsfw", "non-nsfw"), ("run_classify_toxic_speech", "toxic", "non-toxic")],
)
def test_threshold_and_pluggable_backend(adapters, run, positive, negative):
    classify = getattr(adapters, run)
    backend = FixedBackend(0.7)
    assert classify("some text", backend=backend) == (positive, pytest.approx(0.7))
    assert backend.seen == ["some text"]
    assert classify("some text", threshold=0.8, backend=backend) == (negative, pytest.approx(0.3))
    assert classify("some text", threshold=0.7, backend=backend)[0] == positive  # p >= threshold
    assert classify("some text", threshold=0.0, backend=FixedBackend(0.0))[0] == positive
    # a strict threshold flips a clean text's verdict only if the model is that sure
    text = CLEAN[0]
    assert classify(text, threshold=0.99)[0] == negative


def test_threshold_moves_the_decision_with_the_default_backend(adapters):
    text = SEXUAL[0]
    label, score = adapters.run_classify_nsfw(text)
    assert label == "nsfw"
    assert adapters.run_classify_nsfw(text, threshold=min(1.0, score + 1e-6))[0] == "non-nsfw"


def test_missing_fasttext_model_raises(adapters, tmp_path):
    with pytest.raises(FileNotFoundError):
        adapters.run_classify_nsfw("text", backend=str(tmp_path / "jigsaw_fasttext_bigrams_nsfw_final.bin"))
    with pytest.raises(ValueError):
        adapters.run_classify_toxic_speech("text", threshold=1.5)


@pytest.mark.parametrize(
    "run, positive, negative",
    [("run_classify_nsfw", "nsfw", "non-nsfw"), ("run_classify_toxic_speech", "toxic", "non-toxic")],
)
def test_user_supplied_fasttext_model(adapters, tmp_path, run, positive, negative):
    """The Dolma Jigsaw path: a fastText file whose labels are e.g. __label__nsfw / __label__non-nsfw."""
    from tests.data.fasttext_factory import expected_probabilities, write_fasttext_model

    words = {"naughty": [1.0, 0.0], "explicit": [1.0, 0.0], "flower": [0.0, 1.0], "garden": [0.0, 1.0]}
    labels = {positive: [5.0, 0.0], negative: [0.0, 5.0]}
    path = write_fasttext_model(tmp_path / f"jigsaw_{positive}.bin", words, labels)
    classify = getattr(adapters, run)
    for text in ["naughty explicit", "flower garden", "naughty explicit garden", "naughty flower garden"]:
        p = expected_probabilities(text, words, labels)[positive]
        label, score = classify(text, backend=str(path))
        assert label == (positive if p >= 0.5 else negative)
        assert score == pytest.approx(p if p >= 0.5 else 1.0 - p, abs=1e-4)
    # threshold applies to the fastText probability too: p("naughty explicit garden") = 0.84
    assert classify("naughty explicit garden", threshold=0.9, backend=str(path))[0] == negative
