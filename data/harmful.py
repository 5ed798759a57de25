"""Harmful-content filters: NSFW and toxic speech (handout section 2.5, "Harmful content").

The handout uses Dolma's two fastText classifiers trained on the Jigsaw toxic-comment data:
``jigsaw_fasttext_bigrams_nsfw_final.bin`` (labels ``nsfw`` / ``non-nsfw``) and
``jigsaw_fasttext_bigrams_hatespeech_final.bin`` (labels ``toxic`` / ``non-toxic``). They are
large downloads, so the classifier is a *pluggable backend*:

* ``FastTextBackend(model_path, positive_label)`` -- a user-supplied fastText model, e.g. the Dolma
  files above (``backend="path/to/jigsaw_..._nsfw_final.bin"`` is shorthand for it);
* ``ProfanityBackend()`` -- the offline default: the linear SVM (bag of words, calibrated to a
  probability) that ships inside the PyPI package ``alt-profanity-check``. It detects
  *profanity*, which is a proxy for both NSFW and toxic text: it flags swearing, misses polite
  hate speech and sexual content written without crude words. Its model files are joblib
  (pickle) files inside that package -- trusted exactly as much as its code; we never unpickle
  anything else;
* anything with a ``harmful_probability(text) -> float`` method (and, to be fast in the
  pipeline, ``harmful_probabilities(texts) -> array``: one call for a whole batch).

Both ``classify_*`` functions return ``(label, score)`` where ``score`` is the confidence *in the
returned label*, as fastText reports it: with p = P(harmful), the answer is ``("nsfw", p)`` when
p >= threshold, else ``("non-nsfw", 1 - p)``.

>>> classify_toxic_speech("Thank you for the thoughtful review!")  # doctest: +ELLIPSIS
('non-toxic', 0.9...)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np


class HarmfulBackend(Protocol):
    def harmful_probability(self, text: str) -> float:
        """P(text is harmful) in [0, 1]."""
        ...


@lru_cache(maxsize=8)
def _load_fasttext(path: str):
    import fasttext  # fasttext-predict (see data/language.py on fastText packages and numpy 2)

    if not Path(path).is_file():
        raise FileNotFoundError(f"fastText classifier not found: {path}")
    return fasttext.load_model(path)


class FastTextBackend:
    """A fastText classifier file; ``positive_label`` is the harmful class (without ``__label__``)."""

    def __init__(self, model_path: str | Path, positive_label: str):
        self.model_path = str(model_path)
        self.positive_label = positive_label
        if not Path(self.model_path).is_file():
            raise FileNotFoundError(f"fastText classifier not found: {self.model_path}")

    def harmful_probability(self, text: str) -> float:
        model = _load_fasttext(self.model_path)
        labels, probs = model.predict(" ".join(text.split()), k=-1)  # every label, best first
        if not labels:
            return 0.0  # no word the model knows: fastText predicts nothing, so nothing to flag
        scores = {label.removeprefix("__label__"): float(p) for label, p in zip(labels, probs)}
        if self.positive_label not in scores:
            raise ValueError(
                f"{self.model_path} has no label {self.positive_label!r}; it has {sorted(scores)}"
            )
        return min(1.0, max(0.0, scores[self.positive_label]))


class ProfanityBackend:
    """The offline default: alt-profanity-check's calibrated linear model. Its scikit-learn
    pipeline costs ~6 ms per call whatever the input, so a batch is scored in one call."""

    def harmful_probability(self, text: str) -> float:
        return float(self.harmful_probabilities([text])[0])

    def harmful_probabilities(self, texts: Sequence[str]) -> np.ndarray:
        from profanity_check import predict_prob  # loads its two model files on first import

        return np.asarray(predict_prob(list(texts)), dtype=np.float64) if texts else np.zeros(0)


@lru_cache(maxsize=1)
def default_backend() -> ProfanityBackend:
    return ProfanityBackend()


def resolve_backend(backend: HarmfulBackend | str | Path | None, positive_label: str) -> HarmfulBackend:
    """The backend object for ``backend`` (None: the shared offline default; a path: fastText)."""
    if backend is None:
        return default_backend()
    if isinstance(backend, str | Path):
        return FastTextBackend(backend, positive_label)
    if not hasattr(backend, "harmful_probability"):
        raise ValueError(f"backend must be a model path or have harmful_probability(text); got {backend!r}")
    return backend


def harmful_probabilities(texts: Sequence[str], backend: HarmfulBackend) -> np.ndarray:
    """P(harmful) of every text: one batched call when the backend has one, else one per text."""
    batched = getattr(backend, "harmful_probabilities", None)
    if batched is not None:
        return np.asarray(batched(texts), dtype=np.float64)
    return np.array([backend.harmful_probability(t) for t in texts], dtype=np.float64)


def _classify(text, threshold, backend, positive, negative) -> tuple[str, float]:
    if not isinstance(text, str):
        raise ValueError(f"expected str, got {type(text).__name__}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    p = resolve_backend(backend, positive).harmful_probability(text)
    return (positive, p) if p >= threshold else (negative, 1.0 - p)


def classify_nsfw(
    text: str, threshold: float = 0.5, backend: HarmfulBackend | str | Path | None = None
) -> tuple[str, float]:
    """``("nsfw" | "non-nsfw", confidence)``; ``backend`` None = offline profanity model."""
    return _classify(text, threshold, backend, "nsfw", "non-nsfw")


def classify_toxic_speech(
    text: str, threshold: float = 0.5, backend: HarmfulBackend | str | Path | None = None
) -> tuple[str, float]:
    """``("toxic" | "non-toxic", confidence)``; ``backend`` None = offline profanity model."""
    return _classify(text, threshold, backend, "toxic", "non-toxic")
