"""The built-in corpus: real English text from what every Python install ships.

No downloads. The default corpus is the CPython standard library's docstrings (module, class and
function docstrings, read with :mod:`ast`, never by importing the modules) plus the ``pydoc_data``
topic texts -- about 2 MB of technical English. ``include_source=True`` adds the standard library's
source files (about 30 MB more) for benchmarks that need a larger corpus.

Documents are separated by ``<|endoftext|>`` and split deterministically into train and validation
files, cached on disk under a key that names the Python version and the options, so every run of
every job on one machine sees the same bytes::

    >>> paths = build_corpus()            # doctest: +SKIP
    >>> paths.train.read_text()[:60]      # doctest: +SKIP

Other sources: :func:`corpus_from_text_files` turns local text files into the same layout, and
:func:`download_corpus` fetches TinyStories or OpenWebText through ``datasets`` when the user asks
and the network allows.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from basics.files import atomic_write
from basics.pretokenization import ENDOFTEXT

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "lm-from-scratch"
# Bump when the way documents are made changes, so stale caches are not reused.
CORPUS_FORMAT_VERSION = 1
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True)
class CorpusPaths:
    """Where a corpus lives on disk: one text file per split."""

    train: Path
    validation: Path
    notes: tuple[str, ...] = field(default=(), compare=False)  # what building it found worth saying


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    root = stdlib_root()
    files = [p for p in root.rglob("*.py") if not _SKIP_DIRS.intersection(p.relative_to(root).parts)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _module_docstrings(source: str) -> list[str]:
    """Every module, class and function docstring in ``source``, in source order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = [(getattr(n, "lineno", 0), ast.get_docstring(n)) for n in ast.walk(tree) if isinstance(n, nodes)]
    return [doc.strip() for _, doc in sorted(found, key=lambda item: item[0]) if doc and doc.strip()]


def iter_stdlib_documents(include_source: bool = False) -> Iterator[str]:
    """Yield documents: one per ``pydoc_data`` topic, one per stdlib module's docstrings, and (when
    ``include_source``) one per stdlib source file. Deterministic for a given Python install."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        text = topics[name].strip()
        if text:
            yield text
    for path in _stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        docs = _module_docstrings(source)
        if docs:
            yield "\n\n".join(docs)
        if include_source and source.strip():
            yield source.strip()


def _clean(document: str) -> str:
    # A document must not contain the separator itself, or it would split in two.
    return document.replace(ENDOFTEXT, "")


def write_corpus(
    documents: Iterable[str],
    out_dir: Path,
    validation_fraction: float = 0.05,
    seed: int = 0,
) -> CorpusPaths:
    """Shuffle ``documents`` with ``seed``, hold out ``validation_fraction`` of them, and write
    ``train.txt`` and ``validation.txt`` (documents joined by ``<|endoftext|>``) atomically."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    docs = [d for d in (_clean(d).strip() for d in documents) if d]
    if len(docs) < 2:
        raise ValueError(f"need at least 2 non-empty documents to split, got {len(docs)}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(docs) * validation_fraction))
    splits = {"validation": order[:n_val], "train": sorted(order[n_val:])}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, indices in splits.items():
        path = out_dir / f"{split}.txt"
        with atomic_write(path, "w", encoding="utf-8", newline="") as f:
            f.write(ENDOFTEXT.join(docs[i] for i in sorted(indices)))
        paths[split] = path
    return CorpusPaths(train=paths["train"], validation=paths["validation"])


def build_corpus(
    cache_dir: str | Path | None = None,
    *,
    include_source: bool = False,
    validation_fraction: float = 0.05,
    seed: int = 0,
) -> CorpusPaths:
    """Build (or reuse from the cache) the built-in stdlib corpus and return its paths.

    The first build parses the whole standard library (~20 s on a 2-core CPU for docstrings,
    about the same with sources); later calls return at once.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    key = f"v{CORPUS_FORMAT_VERSION}-py{version}-{'src' if include_source else 'doc'}-val{validation_fraction}-seed{seed}"
    out_dir = cache_dir / "corpus" / f"stdlib-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    paths = CorpusPaths(train=out_dir / "train.txt", validation=out_dir / "validation.txt")
    if paths.train.exists() and paths.validation.exists():
        return paths
    return write_corpus(iter_stdlib_documents(include_source), out_dir, validation_fraction, seed)


def split_documents(text: str) -> list[str]:
    """The documents of a text file: the pieces between ``<|endoftext|>`` separators, or, in a file
    without any, its paragraphs (text between blank lines), so any plain text file is a corpus.

    >>> split_documents("one\\n\\ntwo\\nlines\\n\\n\\nthree")
    ['one', 'two\\nlines', 'three']
    """
    if ENDOFTEXT in text:
        return text.split(ENDOFTEXT)
    return re.split(r"\n[ \t]*\n\s*", text)  # a blank line (maybe with spaces) ends a paragraph


def corpus_from_text_files(
    files: Iterable[str | Path],
    out_dir: str | Path,
    validation_fraction: float = 0.05,
    seed: int = 0,
) -> CorpusPaths:
    """Use local text files as the corpus, each split into documents by :func:`split_documents`."""
    documents, names = [], []
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"corpus file not found: {path}")
        names.append(str(path))
        documents.extend(split_documents(path.read_text(encoding="utf-8", errors="replace")))
    found = sum(1 for d in documents if _clean(d).strip())
    if found < 2:
        raise ValueError(
            f"{', '.join(names)}: found {found} document(s), need at least 2 (one is held out for "
            "validation); separate documents with <|endoftext|> or a blank line"
        )
    return write_corpus(documents, Path(out_dir), validation_fraction, seed)


_HF_DATASETS = {
    # name -> (dataset id, train split, validation split, text field)
    "tinystories": ("roneneldan/TinyStories", "train", "validation", "text"),
    "openwebtext": ("Skylion007/openwebtext", "train", None, "text"),
}


def download_corpus(
    name: str,
    cache_dir: str | Path | None = None,
    max_documents: int | None = None,
    validation_fraction: float = 0.005,
    seed: int = 0,
) -> CorpusPaths:
    """Fetch TinyStories or OpenWebText through Hugging Face ``datasets`` (needs the network and
    ``pip install datasets``) and write it in the corpus layout. Only ever called on request."""
    if name not in _HF_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(sorted(_HF_DATASETS))}")
    try:
        import datasets
    except ImportError as error:
        raise ImportError(f"download_corpus({name!r}) needs `pip install datasets`") from error
    repo, train_split, val_split, field = _HF_DATASETS[name]
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    out_dir = cache_dir / "corpus" / f"{name}-{max_documents or 'all'}"
    paths = CorpusPaths(train=out_dir / "train.txt", validation=out_dir / "validation.txt")
    if paths.train.exists() and paths.validation.exists():
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)

    def take(split: str) -> Iterator[str]:
        rows = datasets.load_dataset(repo, split=split, streaming=True)
        for i, row in enumerate(rows):
            if max_documents is not None and i >= max_documents:
                return
            yield row[field]

    if val_split is None:
        return write_corpus(take(train_split), out_dir, validation_fraction, seed)
    for split, path in ((train_split, paths.train), (val_split, paths.validation)):
        with atomic_write(path, "w", encoding="utf-8", newline="") as f:
            f.write(ENDOFTEXT.join(_clean(d).strip() for d in take(split)))
    return paths
