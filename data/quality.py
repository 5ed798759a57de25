"""A trainable quality classifier: "is this page like the ones Wikipedia links to?" (handout 2.7).

The handout's recipe: take pages that Wikipedia articles cite (positives, "wiki") and random
Common Crawl pages (negatives, "cc"), train a fast linear classifier, keep CC pages that score
like the positives. Ours is a **logistic regression on hashed n-grams plus a few page-structure
features**:

    x = [ HashingVectorizer(word 1- and 2-grams, 2**18 buckets, l2-normalised)(text)     # sparse
          s * standardise(structure(text, links)) ]                                     # 11 numbers
    p(wiki | text) = sigmoid(w · x + b)                                                  # w, b learned

The structure features (``structure_features``) are what makes a menu a menu whatever its words:
link density (share of the text in lines that are the text of a link on the page, when the page's
HTML is known), mean and short-line share of line lengths, lines ending like sentences, stop-word
ratio, symbol, digit, capitalised-word, URL-like and separator ("|", "»", "•") ratios, and length.

Hashing means there is no vocabulary to store: the model is ``w`` and ``b`` plus the settings,
saved as a compressed ``.npz`` of plain arrays and loaded with ``allow_pickle=False`` -- a model
file can never run code (pickle/joblib files can). Only the largest n-gram weights are kept (a
sparse vector), which keeps the shipped model under 1 MB.

>>> model = train_quality_classifier(["A clear sentence about the history of the town."] * 20,
...                                  ["Home | Login | Cart | Deals"] * 20)
>>> classify_quality("Shop | Blog | Contact | Deals", model)[0]
'cc'

``classify_quality(text)`` without a model uses the default shipped in ``data/models/``, trained
on real web pages: the articles of ~250 pages saved in the test folders of text-extraction
packages on PyPI and CPython's reference documentation against those pages' own navigation, link
lists, listings and banners (``data.quality_pages``; rebuilt with
``python scripts/train_quality.py --real-default``). Its held-out precision and recall are in the
README. Train the real one on Wikipedia-cited pages vs random CC with ``--positives/--negatives``.
``score`` is the confidence in the returned label: p when "wiki", 1 - p when "cc".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, HashingVectorizer
from sklearn.linear_model import LogisticRegression

POSITIVE, NEGATIVE = "wiki", "cc"
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "quality_default.npz"
FORMAT_VERSION = 2
STRUCTURE_FEATURES = (
    "link density",
    "log words per line",
    "short lines",
    "sentence lines",
    "stop words",
    "symbols",
    "digits",
    "capitalised words",
    "url-like words",
    "separators",
    "log words",
)
_SEPARATORS = frozenset("|»›•·©>")


@dataclass(frozen=True)
class QualityConfig:
    n_features: int = 2**18  # hash buckets; collisions are rare below ~100k distinct n-grams
    ngram_max: int = 2  # word n-grams 1..ngram_max (bigrams capture word order, unlike bags of words)
    l2_strength: float = 10.0  # inverse regularisation C of LogisticRegression (bigger: fit harder)
    max_chars: int = 20_000  # only the first max_chars of a document are read (long pages cost time)
    structure_scale: float = 0.3  # weight of the standardised structure features next to the n-grams
    max_weights: int = 100_000  # n-gram weights kept (largest first); the rest are dropped to save space

    def __post_init__(self) -> None:
        for name in ("n_features", "ngram_max", "max_chars", "max_weights"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("l2_strength", "structure_scale"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite positive number, got {value}")


@dataclass(frozen=True)
class QualityModel:
    """Everything needed to score a text: settings, sparse n-gram weights, structure weights, bias."""

    config: QualityConfig
    indices: np.ndarray  # (nnz,) int64 hash buckets with a non-zero weight
    weights: np.ndarray  # (nnz,) float32 weights of those buckets
    bias: float
    structure_weights: np.ndarray  # (len(STRUCTURE_FEATURES),) weights of the standardised features
    structure_mean: np.ndarray  # (len(STRUCTURE_FEATURES),) training mean of each feature
    structure_std: np.ndarray  # (len(STRUCTURE_FEATURES),) training standard deviation


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def structure_features(text: str, links: frozenset[str] = frozenset()) -> np.ndarray:
    """The page-structure features of ``text`` (see ``STRUCTURE_FEATURES``); ``links`` are the
    whitespace-normalised link texts of its page (empty when only the text is known)."""
    lines = _lines(text) or [""]
    words = text.split()
    num_words, num_chars = max(len(words), 1), max(len(text), 1)
    return np.array(
        [
            sum(len(line) for line in lines if line in links) / num_chars,
            math.log1p(len(words) / len(lines)),
            sum(len(line.split()) < 4 for line in lines) / len(lines),
            sum(line.endswith((".", "!", "?", ":", '"', "”")) for line in lines) / len(lines),
            sum(w.lower().strip(".,;:!?\"'()") in ENGLISH_STOP_WORDS for w in words) / num_words,
            sum(not (c.isalnum() or c.isspace()) for c in text) / num_chars,
            sum(c.isdigit() for c in text) / num_chars,
            sum(w[:1].isupper() for w in words) / num_words,
            sum("http" in w or "www." in w or "@" in w for w in words) / num_words,
            sum(c in _SEPARATORS for c in text) / num_chars,
            math.log1p(len(words)) / 10,
        ]
    )


def _vectorizer(config: QualityConfig) -> HashingVectorizer:
    # alternate_sign=False: a bucket's value is a plain count, so weights read as "evidence for wiki".
    return HashingVectorizer(
        n_features=config.n_features, ngram_range=(1, config.ngram_max), alternate_sign=False, norm="l2"
    )


def _structure(texts: Sequence[str], links: Sequence[frozenset[str]] | None) -> np.ndarray:
    links = links if links is not None else [frozenset()] * len(texts)
    return np.array([structure_features(t, a) for t, a in zip(texts, links, strict=True)]).reshape(
        len(texts), -1
    )


def train_quality_classifier(
    positives: Sequence[str],
    negatives: Sequence[str],
    config: QualityConfig = QualityConfig(),
    seed: int = 0,
    links: Sequence[frozenset[str]] | None = None,
) -> QualityModel:
    """Fit p(wiki | text) on ``positives`` ("wiki") and ``negatives`` ("cc"); ``links`` optionally
    gives each text's page link texts (positives first, then negatives)."""
    if not positives or not negatives:
        raise ValueError(f"need positives and negatives, got {len(positives)} and {len(negatives)}")
    texts = [t[: config.max_chars] for t in list(positives) + list(negatives)]
    grams = _vectorizer(config).transform(texts)  # (docs, n_features)
    structure = _structure(texts, links)  # (docs, features)
    mean, std = structure.mean(axis=0), structure.std(axis=0) + 1e-6
    x = sparse.hstack([grams, sparse.csr_matrix((structure - mean) / std * config.structure_scale)]).tocsr()
    y = np.array([1] * len(positives) + [0] * len(negatives))
    classifier = LogisticRegression(
        C=config.l2_strength, max_iter=2000, class_weight="balanced", random_state=seed
    ).fit(x, y)
    w = classifier.coef_[0]
    gram_weights, structure_weights = w[: config.n_features], w[config.n_features :] * config.structure_scale
    used = np.flatnonzero(gram_weights)  # buckets some training n-gram hit; all others have weight 0
    kept = np.sort(used[np.argsort(-np.abs(gram_weights[used]), kind="stable")[: config.max_weights]])
    return QualityModel(
        config,
        kept.astype(np.int64),
        gram_weights[kept].astype(np.float32),
        float(classifier.intercept_[0]),
        structure_weights.astype(np.float32),
        mean.astype(np.float32),
        std.astype(np.float32),
    )


def quality_probabilities(
    texts: Sequence[str], model: QualityModel, links: Sequence[frozenset[str]] | None = None
) -> np.ndarray:
    """p(wiki | text) for each text, shape (len(texts),)."""
    texts = [t[: model.config.max_chars] for t in texts]
    if not texts:
        return np.zeros(0)
    grams = _vectorizer(model.config).transform(texts)[:, model.indices]  # (docs, kept buckets)
    structure = (_structure(texts, links) - model.structure_mean) / model.structure_std  # (docs, features)
    logits = grams @ model.weights.astype(np.float64) + structure @ model.structure_weights + model.bias
    return 1.0 / (1.0 + np.exp(-logits))


def classify_quality(
    text: str, model: QualityModel | str | Path | None = None, html: str | bytes | None = None
) -> tuple[str, float]:
    """``("wiki" | "cc", confidence in that label)``; ``model`` None = the shipped default; ``html``,
    the page the text came from, lets the link-density feature see its links."""
    if not isinstance(text, str):
        raise ValueError(f"classify_quality expects str, got {type(text).__name__}")
    if model is None or isinstance(model, str | Path):
        model = load_cached_quality_model(str(model or DEFAULT_MODEL_PATH))
    links = [link_texts(html)] if html is not None else None
    p = float(quality_probabilities([text], model, links)[0])
    return (POSITIVE, p) if p >= 0.5 else (NEGATIVE, 1.0 - p)


def link_texts(html: str | bytes) -> frozenset[str]:
    """The whitespace-normalised texts of a page's links (for the link-density feature)."""
    from resiliparse.parse.html import HTMLTree

    if isinstance(html, bytes):
        from data.extract import decode_html_bytes

        html = decode_html_bytes(html) or ""
    body = HTMLTree.parse(html).body
    if body is None:
        return frozenset()
    return frozenset(t for a in body.get_elements_by_tag_name("a") if (t := " ".join(a.text.split())))


def evaluate(model: QualityModel, positives, negatives, links=None) -> dict[str, float]:
    """Accuracy, and precision and recall of each label, of ``model`` on labelled texts."""
    p = quality_probabilities(list(positives) + list(negatives), model, links) >= 0.5
    y = np.array([True] * len(positives) + [False] * len(negatives))
    metrics = {"documents": float(len(y)), "accuracy": float(np.mean(p == y))}
    for name, predicted, actual in ((POSITIVE, p, y), (NEGATIVE, ~p, ~y)):
        hits = float(np.sum(predicted & actual))
        metrics[f"{name} precision"] = hits / max(float(np.sum(predicted)), 1.0)
        metrics[f"{name} recall"] = hits / max(float(np.sum(actual)), 1.0)
    return metrics


def save_quality_model(model: QualityModel, path: str | Path) -> Path:
    """Write ``model`` as a compressed .npz of plain arrays (no pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = asdict(model.config)
    with open(path, "wb") as f:  # a file object, so numpy does not append ".npz" to the name
        np.savez_compressed(
            f,
            format_version=np.int64(FORMAT_VERSION),
            config_names=np.array(list(config)),
            config_values=np.array([float(v) for v in config.values()]),
            indices=model.indices.astype(np.int32),
            weights=model.weights.astype(np.float16),  # half precision: half the size, same decisions
            bias=np.float64(model.bias),
            structure_weights=model.structure_weights.astype(np.float32),
            structure_mean=model.structure_mean.astype(np.float32),
            structure_std=model.structure_std.astype(np.float32),
        )
    return path


def load_quality_model(path: str | Path) -> QualityModel:
    """Read a model written by ``save_quality_model`` (``allow_pickle=False``: data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"quality model not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise ValueError(
                    f"{path}: quality model format {version}, expected {FORMAT_VERSION}; retrain it"
                )
            defaults = asdict(QualityConfig())
            values = dict(zip(data["config_names"].tolist(), data["config_values"].tolist()))
            config = QualityConfig(**{k: type(defaults[k])(v) for k, v in values.items() if k in defaults})
            arrays = {
                k: data[k]
                for k in ("indices", "weights", "structure_weights", "structure_mean", "structure_std")
            }
            bias = float(data["bias"])
    except (KeyError, OSError, EOFError) as error:  # a truncated or foreign file
        raise ValueError(f"{path}: not a quality model ({error})") from None
    return QualityModel(
        config,
        arrays["indices"].astype(np.int64),
        arrays["weights"].astype(np.float32),
        bias,
        arrays["structure_weights"].astype(np.float32),
        arrays["structure_mean"].astype(np.float32),
        arrays["structure_std"].astype(np.float32),
    )


@lru_cache(maxsize=4)
def load_cached_quality_model(path: str | Path) -> QualityModel:
    """``load_quality_model``, once per path per process."""
    return load_quality_model(path)
