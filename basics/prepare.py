"""From raw text to what the training loop eats: a tokenizer and two token arrays.

    corpus text (built-in, local files, or a download) -> train_bpe -> Tokenizer -> train.npy, validation.npy

Every product is cached on disk under a key made of the corpus files' identity (path, size and
modification time) and the vocabulary size, so the second run of ``scripts/train.py`` (or of the
scaling lab) starts training at once, and an edited input file is never served from a stale cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from basics.corpus import (
    DEFAULT_CACHE_DIR,
    CorpusPaths,
    build_corpus,
    corpus_from_text_files,
    download_corpus,
)
from basics.data import load_tokens, tokenize_to_array
from basics.tokenizer import ENDOFTEXT, Tokenizer, load_or_train_default_tokenizer

SPECIAL_TOKENS = (ENDOFTEXT,)


@dataclass(frozen=True)
class PreparedData:
    """A tokenizer (and where its files are) and the token arrays of both splits."""

    tokenizer: Tokenizer
    tokenizer_dir: Path
    train_tokens: Path
    val_tokens: Path
    corpus: CorpusPaths


def _corpus_key(corpus: CorpusPaths, vocab_size: int) -> str:
    h = hashlib.sha256(f"vocab={vocab_size}".encode())
    for path in (corpus.train, corpus.validation):
        stat = path.stat()
        h.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def resolve_corpus(
    text_files: list[str | Path] | None = None,
    dataset: str | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    include_source: bool = False,
) -> CorpusPaths:
    """The corpus to train on: local text files, a named download, or (default) the built-in one."""
    if text_files and dataset:
        raise ValueError("give either text files or a dataset name, not both")
    if text_files:
        return _corpus_of_files(text_files, cache_dir)
    if dataset:
        return download_corpus(dataset, cache_dir)
    return build_corpus(cache_dir, include_source=include_source)


def _corpus_of_files(text_files: list[str | Path], cache_dir: Path) -> CorpusPaths:
    """Local files as a corpus, cached under their paths and reused only while every file keeps its
    size and modification time: an edited file is rebuilt (and the returned ``notes`` say so)."""
    files = [Path(f) for f in text_files]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"corpus file not found: {path}")
    key = hashlib.sha256("\0".join(str(f.resolve()) for f in files).encode()).hexdigest()[:12]
    out = cache_dir / "corpus" / f"files-{key}"
    stamp = out / "source.json"
    fingerprint = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    cached = CorpusPaths(out / "train.txt", out / "validation.txt")
    previous = _read_json(stamp)
    if cached.train.exists() and cached.validation.exists() and previous == fingerprint:
        return cached
    notes = []
    if cached.train.exists() and isinstance(previous, list):
        changed = [str(f) for f, new in zip(files, fingerprint) if new not in previous]
        notes.append(f"{', '.join(changed)} changed since it was cached (size or time); rebuilt the corpus")
    corpus = corpus_from_text_files(files, out)
    stamp.write_text(json.dumps(fingerprint))  # written last: an interrupted build is redone
    return dataclasses.replace(corpus, notes=tuple(notes))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def prepare_data(
    vocab_size: int,
    corpus: CorpusPaths | None = None,
    cache_dir: str | Path | None = None,
    *,
    num_processes: int | None = None,
    progress: bool = False,
) -> PreparedData:
    """Train (or reuse) a BPE tokenizer of ``vocab_size`` on ``corpus.train`` and tokenize both
    splits to uint16/uint32 ``.npy`` arrays (or reuse them). Default corpus: the built-in one."""
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    corpus = corpus if corpus is not None else build_corpus(cache_dir)
    out = cache_dir / "prepared" / _corpus_key(corpus, vocab_size)
    tokenizer = load_or_train_default_tokenizer(
        out / "tokenizer", vocab_size, corpus, special_tokens=SPECIAL_TOKENS
    )
    arrays = {}
    for split, text in (("train", corpus.train), ("validation", corpus.validation)):
        path = out / f"{split}.npy"
        if not path.exists():
            tokenize_to_array(text, tokenizer, path, num_processes=num_processes, progress=progress)
        arrays[split] = path
    (out / "source.json").write_text(
        json.dumps({"train": str(corpus.train), "validation": str(corpus.validation)})
    )
    return PreparedData(tokenizer, out / "tokenizer", arrays["train"], arrays["validation"], corpus)


def unigram_entropy(tokens: np.ndarray | str | Path, vocab_size: int) -> float:
    """Entropy (nats) of the token frequency distribution: the loss of the best model that ignores
    context. A language model has learned something once its loss is well below this."""
    tokens = load_tokens(tokens) if isinstance(tokens, str | Path) else tokens
    counts = np.bincount(np.asarray(tokens), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
