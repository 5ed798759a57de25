"""From raw text to what the training loop eats: a tokenizer and two token arrays.

    corpus text (built-in, local files, or a download) -> train_bpe -> Tokenizer -> train.npy, validation.npy

Every product is cached on disk under a key made of the corpus files' identity and the vocabulary
size, so the second run of ``scripts/train.py`` (or of the scaling lab) starts training at once.
"""

from __future__ import annotations

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
from basics.tokenizer import Tokenizer, load_or_train_default_tokenizer

SPECIAL_TOKENS = ("<|endoftext|>",)


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
        key = hashlib.sha256("\0".join(str(Path(f).resolve()) for f in text_files).encode()).hexdigest()[:12]
        out = cache_dir / "corpus" / f"files-{key}"
        if (out / "train.txt").exists() and (out / "validation.txt").exists():
            return CorpusPaths(out / "train.txt", out / "validation.txt")
        return corpus_from_text_files(text_files, out)
    if dataset:
        return download_corpus(dataset, cache_dir)
    return build_corpus(cache_dir, include_source=include_source)


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
