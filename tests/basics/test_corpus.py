"""The built-in corpus: real English from the standard library, deterministic,
cached, documents separated by <|endoftext|>, split into train and validation; local files and the
`datasets` download path (exercised offline with a stand-in `datasets` module)."""

from __future__ import annotations

import itertools
import sys
import types

import pytest

from basics.corpus import (
    ENDOFTEXT,
    build_corpus,
    corpus_from_text_files,
    download_corpus,
    iter_stdlib_documents,
    write_corpus,
)

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def test_write_corpus_splits_documents_deterministically(tmp_path):
    docs = [f"document number {i}\nwith two lines" for i in range(40)] + ["", "   "]
    a = write_corpus(docs, tmp_path / "a", validation_fraction=0.1, seed=3)
    b = write_corpus(docs, tmp_path / "b", validation_fraction=0.1, seed=3)
    assert a.train.read_bytes() == b.train.read_bytes()
    assert a.validation.read_bytes() == b.validation.read_bytes()
    train, val = a.train.read_text().split(ENDOFTEXT), a.validation.read_text().split(ENDOFTEXT)
    assert len(val) == 4 and len(train) == 36  # empty documents dropped, 10% held out
    assert sorted(train + val) == sorted(d for d in docs if d.strip())
    other = write_corpus(docs, tmp_path / "c", validation_fraction=0.1, seed=4)
    assert other.validation.read_text() != a.validation.read_text()


def test_separator_inside_a_document_cannot_split_it(tmp_path):
    paths = write_corpus([f"a{ENDOFTEXT}b", "c", "d"], tmp_path, validation_fraction=0.34)
    texts = paths.train.read_text().split(ENDOFTEXT) + paths.validation.read_text().split(ENDOFTEXT)
    assert sorted(texts) == ["ab", "c", "d"]


def test_bad_split_arguments_are_reported(tmp_path):
    with pytest.raises(ValueError, match="validation_fraction"):
        write_corpus(["a", "b"], tmp_path, validation_fraction=1.0)
    with pytest.raises(ValueError, match="at least 2"):
        write_corpus(["only one"], tmp_path)


def test_stdlib_documents_are_real_english_and_deterministic():
    first = list(itertools.islice(iter_stdlib_documents(), 300))
    again = list(itertools.islice(iter_stdlib_documents(), 300))
    assert first == again
    text = " ".join(first)
    assert len(text) > 200_000
    for word in (" the ", " and ", " function ", " return "):
        assert word in text


def test_local_text_files_become_a_corpus(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text(ENDOFTEXT.join(f"note {i}" for i in range(20)))
    paths = corpus_from_text_files([f], tmp_path / "out", validation_fraction=0.25)
    assert len(paths.validation.read_text().split(ENDOFTEXT)) == 5
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        corpus_from_text_files([tmp_path / "missing.txt"], tmp_path / "out")


def test_download_goes_through_datasets_and_is_cached(tmp_path, monkeypatch):
    calls = []

    def load_dataset(repo, split, streaming):
        calls.append((repo, split, streaming))
        return ({"text": f"{split} story {i}"} for i in range(10))

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    paths = download_corpus("tinystories", tmp_path, max_documents=4)
    assert calls == [
        ("roneneldan/TinyStories", "train", True),
        ("roneneldan/TinyStories", "validation", True),
    ]
    assert paths.train.read_text().split(ENDOFTEXT) == [f"train story {i}" for i in range(4)]
    assert paths.validation.read_text().split(ENDOFTEXT) == [f"validation story {i}" for i in range(4)]
    download_corpus("tinystories", tmp_path, max_documents=4)
    assert len(calls) == 2, "a second call must reuse the cached files"
    with pytest.raises(ValueError, match="unknown dataset"):
        download_corpus("c4", tmp_path)


@pytest.mark.slow
def test_build_corpus_is_about_2mb_and_cached(tmp_path):
    paths = build_corpus(tmp_path)
    size = paths.train.stat().st_size + paths.validation.stat().st_size
    assert 1_500_000 < size < 4_000_000
    assert ENDOFTEXT in paths.train.read_text()
    assert 0.02 < paths.validation.stat().st_size / size < 0.15
    mtime = paths.train.stat().st_mtime_ns
    assert build_corpus(tmp_path) == paths
    assert paths.train.stat().st_mtime_ns == mtime, "the cached corpus must not be rebuilt"
