"""A trainable quality classifier: "is this page like the ones Wikipedia links to?" (handout 2.7).

The handout's recipe: take pages that Wikipedia articles cite (positives, "wiki") and random
Common Crawl pages (negatives, "cc"), train a fast linear classifier, keep CC pages that score
like the positives. Ours is a **hashed n-gram logistic regression**:

    x = HashingVectorizer(word 1- and 2-grams, 2**18 buckets, l2-normalised)(text)   # sparse
    p(wiki | text) = sigmoid(w · x + b)                                             # w, b learned

Hashing means there is no vocabulary to store: the model is just ``w`` and ``b`` (plus the
vectorizer's settings), saved as a compressed ``.npz`` of plain arrays and loaded with
``allow_pickle=False`` -- a model file can never run code (pickle/joblib files can). Only the
weights of buckets that some training n-gram hit are stored (a sparse vector), which keeps the
shipped model small.

>>> model = train_quality_classifier(["a clear sentence about history."] * 20,
...                                  ["click here buy now cheap"] * 20)
>>> classify_quality("click here, cheap deals", model)[0]
'cc'

``classify_quality(text)`` without a model uses the default shipped in ``data/models/``. It was
trained offline (``python scripts/train_quality.py --offline-default``) on CPython's reference
documentation (positives) against seeded synthetic spam, link farms, boilerplate and word salad
(negatives), so it recognises *well-formed expository prose* and nothing more; train the real one
on Wikipedia-linked pages vs random CC with ``scripts/train_quality.py --positives ... --negatives``.
``score`` is the confidence in the returned label: p when "wiki", 1 - p when "cc".
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

POSITIVE, NEGATIVE = "wiki", "cc"
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "quality_default.npz"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class QualityConfig:
    n_features: int = 2**18  # hash buckets; collisions are rare below ~100k distinct n-grams
    ngram_max: int = 2  # word n-grams 1..ngram_max (bigrams capture word order, unlike bags of words)
    l2_strength: float = 10.0  # inverse regularisation C of LogisticRegression (bigger: fit harder)
    max_chars: int = 20_000  # only the first max_chars of a document are read (long pages cost time)


@dataclass(frozen=True)
class QualityModel:
    """Everything needed to score a text: vectorizer settings, sparse weights, bias."""

    config: QualityConfig
    indices: np.ndarray  # (nnz,) int64 hash buckets with a non-zero weight
    weights: np.ndarray  # (nnz,) float32 weights of those buckets
    bias: float

    def vectorizer(self) -> HashingVectorizer:
        return _vectorizer(self.config)

    def dense_weights(self) -> np.ndarray:
        w = np.zeros(self.config.n_features, dtype=np.float64)
        w[self.indices] = self.weights
        return w  # (n_features,)


def _vectorizer(config: QualityConfig) -> HashingVectorizer:
    # alternate_sign=False: a bucket's value is a plain count, so weights read as "evidence for wiki".
    return HashingVectorizer(
        n_features=config.n_features,
        ngram_range=(1, config.ngram_max),
        alternate_sign=False,
        norm="l2",
        lowercase=True,
    )


def _features(texts: list[str], config: QualityConfig) -> sparse.csr_matrix:
    return _vectorizer(config).transform([t[: config.max_chars] for t in texts])  # (docs, n_features)


def train_quality_classifier(
    positives: list[str], negatives: list[str], config: QualityConfig = QualityConfig(), seed: int = 0
) -> QualityModel:
    """Fit p(wiki | text) on ``positives`` (label "wiki") and ``negatives`` (label "cc")."""
    if not positives or not negatives:
        raise ValueError(f"need positives and negatives, got {len(positives)} and {len(negatives)}")
    x = _features(list(positives) + list(negatives), config)
    y = np.array([1] * len(positives) + [0] * len(negatives))
    clf = LogisticRegression(C=config.l2_strength, max_iter=1000, random_state=seed)
    clf.fit(x, y)
    w = clf.coef_[0]
    used = np.unique(x.indices)  # buckets some training n-gram hit; all others have weight 0
    return QualityModel(config, used.astype(np.int64), w[used].astype(np.float32), float(clf.intercept_[0]))


def quality_probabilities(texts: list[str], model: QualityModel) -> np.ndarray:
    """p(wiki | text) for each text, shape (len(texts),)."""
    x = _features(list(texts), model.config)
    logits = x[:, model.indices] @ model.weights.astype(np.float64) + model.bias  # (docs,)
    return 1.0 / (1.0 + np.exp(-logits))


def classify_quality(text: str, model: QualityModel | str | Path | None = None) -> tuple[str, float]:
    """``("wiki" | "cc", confidence in that label)``; ``model`` None = the shipped default."""
    if not isinstance(text, str):
        raise ValueError(f"classify_quality expects str, got {type(text).__name__}")
    if model is None or isinstance(model, str | Path):
        model = load_cached_quality_model(str(model or DEFAULT_MODEL_PATH))
    p = float(quality_probabilities([text], model)[0])
    return (POSITIVE, p) if p >= 0.5 else (NEGATIVE, 1.0 - p)


def accuracy(model: QualityModel, positives: list[str], negatives: list[str]) -> float:
    """Fraction of ``positives`` scored >= 0.5 plus ``negatives`` scored < 0.5."""
    p = quality_probabilities(list(positives) + list(negatives), model)
    y = np.array([1] * len(positives) + [0] * len(negatives))
    return float(np.mean((p >= 0.5) == (y == 1)))


def split_held_out(texts: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Shuffle ``texts`` with ``seed`` and return ``(train, held_out)``, held_out ~fraction of them."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(len(texts) * fraction))
    return [texts[i] for i in order[n_held:]], [texts[i] for i in order[:n_held]]


def train_and_evaluate(
    positives: list[str],
    negatives: list[str],
    config: QualityConfig = QualityConfig(),
    held_out_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[QualityModel, dict[str, float]]:
    """Train on a split of the data; return the model and train / held-out accuracy and sizes."""
    pos_train, pos_held = split_held_out(positives, held_out_fraction, seed)
    neg_train, neg_held = split_held_out(negatives, held_out_fraction, seed + 1)
    model = train_quality_classifier(pos_train, neg_train, config, seed)
    metrics = {
        "train_docs": len(pos_train) + len(neg_train),
        "held_out_docs": len(pos_held) + len(neg_held),
        "train_accuracy": accuracy(model, pos_train, neg_train),
        "held_out_accuracy": accuracy(model, pos_held, neg_held),
    }
    return model, metrics


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
        )
    return path


def load_quality_model(path: str | Path) -> QualityModel:
    """Read a model written by ``save_quality_model`` (``allow_pickle=False``: data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"quality model not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        if int(data["format_version"]) != FORMAT_VERSION:
            raise ValueError(
                f"{path}: quality model format {int(data['format_version'])}, expected {FORMAT_VERSION}"
            )
        defaults = asdict(QualityConfig())
        values = dict(zip(data["config_names"].tolist(), data["config_values"].tolist()))
        config = QualityConfig(**{k: type(defaults[k])(v) for k, v in values.items() if k in defaults})
        return QualityModel(
            config, data["indices"].astype(np.int64), data["weights"].astype(np.float32), float(data["bias"])
        )


@lru_cache(maxsize=4)
def load_cached_quality_model(path: str | Path) -> QualityModel:
    """``load_quality_model``, once per path per process."""
    return load_quality_model(path)


def reference_documentation_texts(min_words: int = 50, max_words: int = 150) -> list[str]:
    """Offline positives: CPython's ``pydoc_data`` reference topics, cut into paragraph groups of
    ``min_words``..``max_words`` words (well-formed English expository prose; no download)."""
    from pydoc_data.topics import topics

    docs = []
    for name in sorted(topics):
        paragraphs = [p.strip() for p in topics[name].split("\n\n") if p.strip()]
        chunk: list[str] = []
        for i, paragraph in enumerate(paragraphs):
            chunk.append(paragraph)
            num_words = sum(len(p.split()) for p in chunk)
            if num_words >= max_words or i == len(paragraphs) - 1:
                if num_words >= min_words:
                    docs.append("\n\n".join(chunk))
                chunk = []
    return docs


def load_training_texts(
    paths: list[str | Path], max_docs: int | None = None, min_chars: int = 1
) -> list[str]:
    """Documents from WARC/WET files (by suffix: ``.warc``, ``.wet``, optionally ``.gz``) or text files.

    WARC ``response`` pages go through ``extract_text_from_html_bytes``; WET ``conversion`` records
    are UTF-8 text. A text file holds documents separated by ``<|endoftext|>`` if that marker
    occurs, else one document per non-empty line. Pages that extract to nothing are left out.
    """
    from data.extract import extract_text_from_html_bytes
    from data.warc import iter_warc_records

    texts: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"training file not found: {path}")
        suffixes = [s for s in path.suffixes if s != ".gz"]
        if suffixes and suffixes[-1] in (".warc", ".wet"):
            for record in iter_warc_records(path):
                if record.record_type == "conversion":
                    text = record.payload.decode("utf-8", errors="replace")
                else:
                    text = extract_text_from_html_bytes(record.payload) or ""
                texts.append(text)
        else:
            content = path.read_text(encoding="utf-8", errors="replace")
            texts.extend(
                content.split("<|endoftext|>") if "<|endoftext|>" in content else content.splitlines()
            )
    texts = [t.strip() for t in texts if len(t.strip()) >= min_chars]
    return texts[:max_docs] if max_docs is not None else texts
