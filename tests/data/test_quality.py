"""Graders for the quality classifier: held-out accuracy on generated data (against a plain
scikit-learn pipeline as the peer), save/load without pickle, the shipped default, the script."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.warc_factory import Page, encode_page, html_page, write_warc

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

REPO = Path(__file__).resolve().parents[2]
SUBJECTS = [
    "the committee",
    "a young engineer",
    "the old harbour",
    "our village council",
    "the museum",
    "a local historian",
    "the research team",
    "the river authority",
    "the school board",
    "the author",
]
VERBS = ["examined", "described", "restored", "published", "debated", "measured", "reconstructed", "surveyed"]
OBJECTS = [
    "the medieval bridge",
    "a detailed report",
    "the annual budget",
    "the railway timetable",
    "several letters from the archive",
    "the climate records",
    "the original manuscript",
    "the coastline",
]
TAILS = [
    "before the winter holidays",
    "after a long public consultation",
    "with help from volunteers",
    "in the spring of that year",
    "despite considerable opposition",
    "for the first time in decades",
]
SPAM = [
    "cheap",
    "free",
    "bonus",
    "click",
    "buy",
    "now",
    "casino",
    "win",
    "deal",
    "offer",
    "pills",
    "loans",
    "best",
    "price",
    "sale",
    "limited",
    "cash",
    "fast",
    "online",
    "discount",
]
MENU = ["Home", "Login", "Cart", "Contact", "FAQ", "Sitemap", "Privacy", "Terms", "Shop", "Deals"]


def prose(rng):
    sentences = [
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}.".capitalize()
        for _ in range(rng.randint(4, 9))
    ]
    return " ".join(sentences)


def junk(rng):
    kind = rng.randrange(3)
    if kind == 0:
        return " ".join(rng.choice(SPAM) for _ in range(rng.randint(15, 60))) + "!!!"
    if kind == 1:
        return "\n".join(" | ".join(rng.sample(MENU, 5)) for _ in range(rng.randint(3, 8)))
    return " ".join(
        f"{rng.choice(SPAM).upper()} {rng.randint(1, 99)}% OFF ${rng.randint(5, 500)}" for _ in range(10)
    )


def dataset(n, seed):
    rng = random.Random(seed)
    return [prose(rng) for _ in range(n)], [junk(rng) for _ in range(n)]


def held_out_accuracy(adapters, model, positives, negatives):
    right = sum(adapters.run_classify_quality(t, model=model)[0] == "wiki" for t in positives)
    right += sum(adapters.run_classify_quality(t, model=model)[0] == "cc" for t in negatives)
    return right / (len(positives) + len(negatives))


def test_held_out_accuracy_matches_sklearn_peer(adapters):
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression

    train_pos, train_neg = dataset(150, seed=1)
    test_pos, test_neg = dataset(100, seed=2)
    model = adapters.run_train_quality_classifier(train_pos, train_neg, seed=0)
    ours = held_out_accuracy(adapters, model, test_pos, test_neg)

    vectorizer = HashingVectorizer(n_features=2**18, ngram_range=(1, 2), alternate_sign=False)
    peer = LogisticRegression(max_iter=1000).fit(
        vectorizer.transform(train_pos + train_neg), [1] * 150 + [0] * 150
    )
    peer_accuracy = peer.score(vectorizer.transform(test_pos + test_neg), [1] * 100 + [0] * 100)
    assert ours >= 0.95
    assert ours >= peer_accuracy - 0.03


def test_scores_are_confidences(adapters):
    train_pos, train_neg = dataset(60, seed=3)
    model = adapters.run_train_quality_classifier(train_pos, train_neg)
    for text in dataset(10, seed=4)[0] + dataset(10, seed=4)[1]:
        label, score = adapters.run_classify_quality(text, model=model)
        assert label in ("wiki", "cc") and 0.5 <= score <= 1.0


def test_save_load_roundtrip_without_pickle(adapters, tmp_path):
    train_pos, train_neg = dataset(60, seed=5)
    model = adapters.run_train_quality_classifier(train_pos, train_neg)
    path = tmp_path / "quality.npz"
    adapters.run_save_quality_model(model, path)
    assert path.stat().st_size < 1_000_000
    assert not path.read_bytes().startswith(b"\x80")  # not a bare pickle stream
    if path.read_bytes()[:2] == b"PK":  # an .npz: must load with pickles forbidden
        import numpy as np

        with np.load(path, allow_pickle=False) as data:
            assert all(data[name].dtype != object for name in data.files)
    loaded = adapters.run_load_quality_model(path)
    for text in dataset(20, seed=6)[0] + dataset(20, seed=6)[1]:
        (label_a, score_a), (label_b, score_b) = (
            adapters.run_classify_quality(text, model=model),
            adapters.run_classify_quality(text, model=loaded),
        )
        assert label_a == label_b
        assert score_a == pytest.approx(score_b, abs=1e-2)


def test_shipped_default_model(adapters):
    spam = [
        "Buy cheap pills online now! Best casino bonus, click here for free money and limited offers!!!",
        "cheap loans fast cash cheap loans fast cash best price discount sale buy now free bonus",
    ]
    good = [
        "A function definition is an executable statement. Its execution binds the function name in the "
        "current local namespace to a function object, which wraps the executable code for the function.",
        "When an exception is raised, the interpreter searches the enclosing blocks for a handler. If none "
        "is found, the program terminates and a traceback describing the error is printed.",
    ]
    for text in spam:
        assert adapters.run_classify_quality(text)[0] == "cc"
    for text in good:
        label, score = adapters.run_classify_quality(text)
        assert label == "wiki" and 0.5 <= score <= 1.0
    shipped = REPO / "data" / "models"
    assert any(p.stat().st_size < 1_000_000 for p in shipped.iterdir())


def test_missing_model_file(adapters, tmp_path):
    with pytest.raises(FileNotFoundError):
        adapters.run_load_quality_model(tmp_path / "missing.npz")


def test_train_script_on_warc_and_text_files(adapters, tmp_path):
    positives, negatives = dataset(40, seed=7)
    pages = [
        Page(f"http://good{i}.example/", encode_page(html_page(f"Doc {i}", [t])))
        for i, t in enumerate(positives)
    ]
    write_warc(tmp_path / "positives.warc.gz", pages)
    (tmp_path / "negatives.txt").write_text("<|endoftext|>".join(negatives))
    out = tmp_path / "model.npz"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "train_quality.py"),
            "--positives",
            str(tmp_path / "positives.warc.gz"),
            "--negatives",
            str(tmp_path / "negatives.txt"),
            "--out",
            str(out),
            "--held-out-fraction",
            "0.25",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "held_out_accuracy" in result.stdout
    accuracy = float(
        next(line.split()[-1] for line in result.stdout.splitlines() if line.startswith("held_out_accuracy"))
    )
    assert accuracy >= 0.9
    model = adapters.run_load_quality_model(out)
    assert adapters.run_classify_quality(dataset(1, seed=8)[0][0], model=model)[0] == "wiki"
