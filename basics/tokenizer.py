"""The byte-level BPE ``Tokenizer``: encode text to ids and back, in GPT-2's format.

Follows the course handout, section 2.6 (encoding and decoding), and GPT-2's ``encoder.py``.
Encoding a text::

    "the cat<|endoftext|>"  --split on specials, longest first-->  "the cat" | <|endoftext|>
    "the cat"  --GPT-2 regex-->  "the", " cat"  --bytes-->  t h e / ' ' c a t
    apply the merges inside each pre-token, lowest rank first:  (t,h) (th,e) ... -> "the", " cat"
    -> [id("the"), id(" cat"), id("<|endoftext|>")]

Decoding concatenates the tokens' bytes and decodes UTF-8, turning invalid bytes into U+FFFD.

Files: ``save`` / ``from_files`` use GPT-2's format (``vocab.json`` maps each token, written in
GPT-2's printable byte-to-unicode alphabet, to its id; ``merges.txt`` lists one merge per line,
optionally after a ``#version`` header), so GPT-2's published files load here and our files load
in Hugging Face ``tokenizers``. ``to_tiktoken`` builds a ``tiktoken.Encoding`` from the same
vocabulary: tiktoken's *rank* of a token is its id, which works because ``train_bpe`` numbers the
bytes first, then the merges in creation order, then the special tokens.

Simplifications: the pre-token cache is a dict that is cleared when it grows past a bound (not an
LRU); special tokens stored in ``vocab.json`` are written in the byte alphabet like any token.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from basics.bpe import train_bpe, train_bpe_reference
from basics.pretokenization import (
    ENDOFTEXT,
    GPT2_PATTERN,
    PreTokenizer,
    find_chunk_boundaries,
    iter_file_text,
    split_token_for,
)

if TYPE_CHECKING:
    from basics.corpus import CorpusPaths

__all__ = [
    "ENDOFTEXT",
    "Tokenizer",
    "eos_token_id",
    "train_bpe",
    "train_bpe_reference",
    "bytes_to_unicode",
    "load_or_train_default_tokenizer",
    "TokenizerTrainConfig",
]

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
SPECIALS_FILE = "special_tokens.json"
_CACHE_LIMIT = 1 << 18  # pre-tokens kept in the encode cache before it is cleared


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character: printable Latin-1 bytes map to
    themselves, the other 68 (control bytes, space, ...) to chr(256 + k) in byte order.

    >>> bytes_to_unicode()[ord("a")], bytes_to_unicode()[ord(" ")], bytes_to_unicode()[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}  # 188 bytes that print as themselves
    extra = 0
    for b in range(256):
        if b not in mapping:  # whitespace and control bytes would be invisible or break the files
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _to_unicode(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def _from_unicode(text: str) -> bytes:
    decoder = _unicode_to_bytes()
    try:
        return bytes(decoder[c] for c in text)  # one byte per character of the alphabet
    except KeyError:
        # Not in the byte alphabet (e.g. an added token written as plain text): take its UTF-8.
        return text.encode("utf-8")


class Tokenizer:
    """Byte-level BPE tokenizer from a vocabulary and merges.

    >>> vocab = {i: bytes([i]) for i in range(256)} | {256: b"th", 257: b"the"}
    >>> tok = Tokenizer(vocab, [(b"t", b"h"), (b"th", b"e")], special_tokens=["<|endoftext|>"])
    >>> tok.encode("the<|endoftext|>")
    [257, 258]
    >>> tok.decode([257, 258])
    'the<|endoftext|>'

    Special tokens missing from ``vocab`` are appended with new ids (258 above).
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: Iterable[str] | None = None,
    ):
        self.vocab: dict[int, bytes] = dict(vocab)
        self.merges: list[tuple[bytes, bytes]] = list(merges)
        self._pretokenizer = PreTokenizer(special_tokens)
        self.special_tokens: list[str] = self._pretokenizer.special_tokens
        # bytes -> id; with duplicate bytes the lowest id wins (iterate from the highest, overwrite).
        self._ids: dict[bytes, int] = {}  # the inverse of vocab, for turning merges into id pairs
        for i in sorted(self.vocab, reverse=True):
            self._ids[self.vocab[i]] = i
        self.special_ids: dict[str, int] = {}
        for token in self.special_tokens:
            encoded = token.encode("utf-8")
            if encoded not in self._ids:  # the handout's rule: append a missing special with a new id
                new = max(self.vocab, default=-1) + 1
                self.vocab[new] = encoded
                self._ids[encoded] = new
            self.special_ids[token] = self._ids[encoded]
        # Every byte must have a token, or some text could not be encoded at all.
        missing = [b for b in range(256) if bytes([b]) not in self._ids]
        if missing:
            raise ValueError(f"vocab lacks {len(missing)} single-byte tokens, e.g. byte {missing[0]}")
        self._byte_ids = [self._ids[bytes([b])] for b in range(256)]  # byte value -> id
        # (left id, right id) -> (rank, merged id): encoding works on ids, and merging compares ranks,
        # lower first. setdefault: if a pair was listed twice, its first (lowest) rank counts.
        self._ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (a, b) in enumerate(self.merges):
            if a not in self._ids or b not in self._ids or a + b not in self._ids:
                raise ValueError(f"merge {rank} ({a!r}, {b!r}) uses or makes a token missing from the vocab")
            self._ranks.setdefault((self._ids[a], self._ids[b]), (rank, self._ids[a + b]))
        self._cache: dict[str, list[int]] = {}  # pre-token -> ids: natural text repeats its words

    # ---- files --------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        vocab_filepath: str | Path,
        merges_filepath: str | Path,
        special_tokens: Iterable[str] | None = None,
    ) -> Tokenizer:
        """Load GPT-2-format ``vocab.json`` and ``merges.txt`` (with or without a ``#version``
        header line)."""
        vocab_path, merges_path = Path(vocab_filepath), Path(merges_filepath)
        for path in (vocab_path, merges_path):
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer file not found: {path}")
        try:
            entries = json.loads(vocab_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{vocab_path}: not valid JSON ({error})") from None
        if not isinstance(entries, dict):
            raise ValueError(f"{vocab_path}: expected a JSON object token -> id")
        for token, i in entries.items():  # ids straight from a file: refuse lists, null, "7", 1.5, true
            if isinstance(i, bool) or not isinstance(i, int) or i < 0:
                raise ValueError(f"{vocab_path}: token {token!r} has id {i!r}, not an integer >= 0")
        vocab = {i: _from_unicode(token) for token, i in entries.items()}
        merges = []
        for number, line in enumerate(merges_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or (number == 1 and line.startswith("#version")):
                continue
            # A space separates the two tokens; tokens never contain one (space is written as "Ġ").
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(
                    f"{merges_path}:{number}: expected two tokens separated by a space, got {line!r}"
                )
            merges.append((_from_unicode(parts[0]), _from_unicode(parts[1])))
        return cls(vocab, merges, special_tokens)

    def save(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``vocab.json``, ``merges.txt`` (GPT-2 format, ``#version: 0.2`` header) and
        ``special_tokens.json`` into ``directory``; returns the first two paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        entries = {_to_unicode(token): i for i, token in sorted(self.vocab.items())}
        if len(entries) != len(self.vocab):
            raise ValueError("vocab has duplicate tokens; GPT-2's vocab.json cannot hold them")
        vocab_path, merges_path = directory / VOCAB_FILE, directory / MERGES_FILE
        vocab_path.write_text(json.dumps(entries, ensure_ascii=False, indent=0), encoding="utf-8")
        lines = ["#version: 0.2"] + [f"{_to_unicode(a)} {_to_unicode(b)}" for a, b in self.merges]
        merges_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        (directory / SPECIALS_FILE).write_text(json.dumps(self.special_tokens), encoding="utf-8")
        return vocab_path, merges_path

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Load what :meth:`save` wrote (the special tokens included)."""
        directory = Path(directory)
        specials_path = directory / SPECIALS_FILE
        specials = json.loads(specials_path.read_text(encoding="utf-8")) if specials_path.is_file() else None
        return cls.from_files(directory / VOCAB_FILE, directory / MERGES_FILE, specials)

    def to_tiktoken(self, name: str = "lm-from-scratch"):
        """A ``tiktoken.Encoding`` with this vocabulary (needs ``pip install tiktoken``). A token's
        id must be its rank: single bytes before every merged token, merged tokens in merge order."""
        import tiktoken

        specials = set(self.special_ids.values())
        ranks = {token: i for i, token in self.vocab.items() if i not in specials}  # bytes -> rank
        # tiktoken merges the pair whose *result* has the lowest rank, so ranks must follow merge order.
        merged = [self._ids[a + b] for a, b in self.merges]
        if len(ranks) != len(self.vocab) - len(specials):
            raise ValueError("vocab has duplicate tokens; tiktoken needs one rank per token")
        if merged and (max(self._byte_ids) > merged[0] or any(x >= y for x, y in zip(merged, merged[1:]))):
            raise ValueError("token ids are not in merge order, so they cannot serve as tiktoken ranks")
        return tiktoken.Encoding(
            name=name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=dict(self.special_ids)
        )

    # ---- encoding -----------------------------------------------------------------------

    def _bpe(self, pretoken: str) -> list[int]:
        """Apply the merges to one pre-token: repeatedly merge the adjacent pair of lowest rank
        (every occurrence of it, left to right) until no adjacent pair is a merge.

        This replays training: merges were learned in rank order, and a pair can only exist once
        the merges that built its halves have been applied, so lowest rank first reproduces them."""
        ids = [self._byte_ids[b] for b in pretoken.encode("utf-8")]  # start from single bytes
        ranks = self._ranks
        # E.g. "the" with merges 0: (t,h), 1: (th,e): [t, h, e] -> (t,h) has rank 0 -> [th, e]
        # -> (th,e) has rank 1 -> [the] -> one id left, done. Each round removes at least one id.
        while len(ids) > 1:
            # Find the adjacent pair that was merged earliest in training (lowest rank).
            best = None  # (rank, merged id) of the best pair so far
            position = 0  # where it first occurs
            for i, pair in enumerate(zip(ids, ids[1:])):
                found = ranks.get(pair)
                if found is not None and (best is None or found[0] < best[0]):
                    best, position = found, i
            if best is None:
                break  # no adjacent pair is a merge: done
            # Merge every occurrence of that pair, left to right; nothing before `position` has it.
            a, b = ids[position], ids[position + 1]
            merged = ids[:position]  # the prefix before the first occurrence is copied unchanged
            i, last = position, len(ids) - 1
            while i <= last:
                if i < last and ids[i] == a and ids[i + 1] == b:
                    merged.append(best[1])
                    i += 2  # both halves consumed (so "a a a" with (a, a) gives "aa a")
                else:
                    merged.append(ids[i])
                    i += 1
            ids = merged  # shorter by the number of occurrences merged
        return ids

    def _encode_items(self, items: Iterable[tuple[list[str], str | None]]) -> Iterator[list[int]]:
        """Ids for each ``(pre-tokens, special)`` item; each distinct pre-token goes through
        :meth:`_bpe` once, then the cache answers."""
        cache = self._cache
        for pretokens, special in items:
            out: list[int] = []
            for pretoken in pretokens:
                # A pre-token's ids depend on nothing around it, so they can be cached by its text.
                ids = cache.get(pretoken)
                if ids is None:
                    if len(cache) >= _CACHE_LIMIT:  # bounded memory on long, diverse streams
                        cache.clear()
                    ids = cache[pretoken] = self._bpe(pretoken)
                out += ids  # merges never cross pre-tokens: their ids simply concatenate
            if special is not None:
                out.append(self.special_ids[special])  # a special token is one id, never merged
            yield out

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        ids: list[int] = []
        for part in self._encode_items(self._pretokenizer.split(text)):
            ids += part
        return ids

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        """Lazily yield the ids of the concatenation of ``iterable`` (e.g. an open file's lines),
        holding only about 64K characters at a time. Equal to ``encode("".join(iterable))``."""
        for part in self._encode_items(self._pretokenizer.split_stream(iterable, min_chars=1 << 16)):
            yield from part

    def encode_file(self, path: str | Path, num_processes: int | None = 1) -> np.ndarray:
        """Ids of a whole UTF-8 file as a 1-D array (``uint16`` when the vocab fits, else
        ``int32``), encoded by ``num_processes`` processes (None: all cores) over chunks cut just
        before a special token. Equal to ``encode(path.read_text())``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"file to encode not found: {path}")
        dtype = np.uint16 if max(self.vocab) < (1 << 16) else np.int32  # 2 bytes per id when they fit
        num_processes = num_processes or os.cpu_count() or 1
        # Chunks start at a special token, where pre-tokenization splits anyway: encoding each chunk
        # on its own gives exactly the ids of the whole file. Several chunks per process balance load.
        split = split_token_for(self.special_tokens)
        num_chunks = num_processes * 4 if num_processes > 1 else 1
        cuts = find_chunk_boundaries(path, num_chunks, split.encode("utf-8"), self.special_tokens)
        jobs = [(str(path), a, b) for a, b in zip(cuts[:-1], cuts[1:])]
        if num_processes == 1 or len(jobs) == 1:
            parts = [_encode_range(self, job, dtype) for job in jobs]
        else:
            state = (self.vocab, self.merges, self.special_tokens, dtype)  # sent once per worker
            with multiprocessing.get_context().Pool(
                min(num_processes, len(jobs)), _init_worker, state
            ) as pool:
                parts = pool.map(_encode_range_in_worker, jobs)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)  # chunks in file order

    # ---- decoding -----------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD."""
        try:
            # Join bytes first, decode once: one character's bytes may be split across tokens.
            data = b"".join([self.vocab[int(i)] for i in ids])
        except KeyError as error:
            raise ValueError(
                f"unknown token id {error.args[0]} (vocab has {len(self.vocab)} tokens)"
            ) from None
        return data.decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return len(self.vocab)


def eos_token_id(tokenizer: Any, eos: str = ENDOFTEXT) -> int:
    """The id a tokenizer gives the end-of-text token ``eos``: its special-token id, else a
    one-token encoding, else an entry of a bytes vocabulary. ValueError when it has none.

    Works for any object with ``encode`` (and optionally ``special_ids`` / ``vocab``), so callers
    can pass our Tokenizer or a stand-in."""
    special_ids = getattr(tokenizer, "special_ids", None)
    if isinstance(special_ids, dict) and eos in special_ids:
        return int(special_ids[eos])
    ids = tokenizer.encode(eos)
    if len(ids) == 1:
        return int(ids[0])
    vocab = getattr(tokenizer, "vocab", None)
    if isinstance(vocab, dict):
        for token_id, token in vocab.items():
            if token == eos.encode("utf-8"):
                return int(token_id)
    raise ValueError(f"tokenizer has no single token for {eos!r}; add it as a special token")


def _encode_range(tokenizer: Tokenizer, job: tuple[str, int, int], dtype) -> np.ndarray:
    """Ids of bytes ``[start, end)`` of a file, collected in a compact array (2-4 bytes per id
    rather than a list of Python ints)."""
    path, start, end = job
    # array.array grows like a list but stores raw 2- or 4-byte ids; "H" = uint16, "i" = int32.
    ids = array("H" if dtype == np.uint16 else "i")
    for part in tokenizer._encode_items(
        tokenizer._pretokenizer.split_stream(iter_file_text(path, start, end))
    ):
        ids.extend(part)
    return np.frombuffer(ids, dtype=dtype) if ids else np.zeros(0, dtype=dtype)


_worker_state: tuple[Tokenizer, type] | None = None


def _init_worker(vocab, merges, special_tokens, dtype) -> None:
    global _worker_state
    _worker_state = (Tokenizer(vocab, merges, special_tokens), dtype)


def _encode_range_in_worker(job: tuple[str, int, int]) -> np.ndarray:
    assert _worker_state is not None
    return _encode_range(_worker_state[0], job, _worker_state[1])


# ---- the default tokenizer for the training job -------------------------------------------


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """What ``scripts/train_tokenizer.py`` trains."""

    # bytes + merges + special tokens
    vocab_size: int = field(
        default=10_000, metadata={"help": "vocabulary size: 256 bytes + merges + specials"}
    )
    # never split, never merged across
    special_tokens: tuple[str, ...] = field(default=(ENDOFTEXT,), metadata={"help": "special tokens"})
    # pre-tokenization processes
    num_processes: int | None = field(
        default=None, metadata={"help": "pre-tokenization processes (None: all cores)"}
    )

    def __post_init__(self) -> None:
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(
                f"TokenizerTrainConfig.num_processes must be >= 1 or None; got {self.num_processes}"
            )


def load_or_train_default_tokenizer(
    out_dir: str | Path,
    vocab_size: int = 10_000,
    corpus_paths: CorpusPaths | str | Path | None = None,
    special_tokens: Iterable[str] = (ENDOFTEXT,),
    *,
    num_processes: int | None = None,
    progress: bool = False,
) -> Tokenizer:
    """The tokenizer saved in ``out_dir`` if it has this ``vocab_size`` and these special
    tokens; otherwise train one on the training split of ``corpus_paths`` (a
    ``basics.corpus.CorpusPaths``, a text file path, or None for the built-in corpus), save it
    to ``out_dir`` and return it. About 5 s for vocab 10,000 on the built-in corpus (2 cores).
    The corpus of a saved tokenizer is not checked: delete ``out_dir`` to retrain on another."""
    out_dir = Path(out_dir)
    specials = list(special_tokens)
    if (out_dir / VOCAB_FILE).is_file() and (out_dir / MERGES_FILE).is_file():
        tokenizer = Tokenizer.load(out_dir)
        if len(tokenizer) == vocab_size and tokenizer.special_tokens == specials:
            return tokenizer
    if corpus_paths is None:
        from basics.corpus import build_corpus

        corpus_paths = build_corpus()
    train_path = Path(getattr(corpus_paths, "train", corpus_paths))
    vocab, merges = train_bpe(
        train_path, vocab_size, specials, num_processes=num_processes, progress=progress
    )
    tokenizer = Tokenizer(vocab, merges, specials)
    tokenizer.save(out_dir)
    return tokenizer
