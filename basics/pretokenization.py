"""Pre-tokenization: split text on the special tokens, then into GPT-2 pre-tokens; and the file
chunking that lets BPE training and file encoding run in parallel processes.

Course handout, section 2.4 (pre-tokenization) and its hint on parallelising it. Both the trainer
(``basics.bpe``) and the ``Tokenizer`` use what is here, so they split text the same way::

    "Hi you<|endoftext|> ok"  --specials, longest first-->  "Hi you" | <|endoftext|> | " ok"
    "Hi you"  --GPT2_PATTERN-->  "Hi", " you"

A merge never crosses a special token or a pre-token boundary, so BPE only needs to know how often
each distinct pre-token occurs (:func:`count_pretokens`).

Large files: cut the file into byte ranges just before a special token
(:func:`find_chunk_boundaries`), so every piece starts at a document boundary and the pieces can be
pre-tokenized independently; each worker streams its range in blocks (:func:`iter_file_text`,
:meth:`PreTokenizer.split_stream`), so no process holds the whole corpus.

Simplification: a file without special tokens is one chunk (there is no safe place to cut it
without looking at the regex's context); it is still streamed.
"""

from __future__ import annotations

import codecs
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import regex

# The end-of-text special token that separates documents (GPT-2's, and the course's).
ENDOFTEXT = "<|endoftext|>"

# The GPT-2 pre-tokenizer pattern (contractions, letters, numbers, other symbols, whitespace).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN_RE = regex.compile(GPT2_PATTERN)

_BLOCK_CHARS = 1 << 19  # pre-tokenize streamed text in blocks of about this many characters
_READ_BYTES = 1 << 19  # read files in blocks of this many bytes (small blocks: lower peak memory)
_MAX_CHUNK_BYTES = 16 << 20  # no worker chunk larger than this (when specials allow cutting)


def split_token_for(special_tokens: Sequence[str]) -> str:
    """The special token to cut files before: ``<|endoftext|>`` if present, else the first one
    ("" when there is none, and then files are not cut)."""
    return ENDOFTEXT if ENDOFTEXT in special_tokens else (list(special_tokens) or [""])[0]


def check_special_tokens(special_tokens: Iterable[str] | None) -> list[str]:
    """Validate special tokens: strings, non-empty, no duplicates. Returns them as a list."""
    specials = list(special_tokens or [])
    for token in specials:
        if not isinstance(token, str):
            raise ValueError(f"special tokens must be str, got {type(token).__name__}: {token!r}")
        if not token:
            raise ValueError("special tokens must be non-empty strings, got ''")
    duplicates = sorted({t for t in specials if specials.count(t) > 1})
    if duplicates:
        raise ValueError(f"duplicate special tokens: {duplicates}")
    return specials


class PreTokenizer:
    """Split text into special tokens and GPT-2 pre-tokens.

    >>> pt = PreTokenizer(["<|endoftext|>"])
    >>> list(pt.split("Hi you<|endoftext|> ok"))
    [(['Hi', ' you'], '<|endoftext|>'), ([' ok'], None)]

    Each item is ``(pre-tokens, special)``: the pre-tokens of a stretch of text followed by the
    special token that ended it (``None`` at the end). Special tokens are matched longest first, so
    with ``"<|endoftext|>"`` and ``"<|endoftext|><|endoftext|>"`` both special the doubled one
    stays whole.
    """

    def __init__(self, special_tokens: Iterable[str] | None = None):
        self.special_tokens = check_special_tokens(special_tokens)
        ordered = sorted(self.special_tokens, key=len, reverse=True)  # longest first
        self.special_re = regex.compile("|".join(map(regex.escape, ordered))) if ordered else None
        # Every proper prefix of a special token: a buffer ending in one might grow into a special.
        self._special_prefixes = {t[:k] for t in self.special_tokens for k in range(1, len(t))}
        self._max_prefix = max((len(t) - 1 for t in self.special_tokens), default=0)

    def split(self, text: str) -> Iterator[tuple[list[str], str | None]]:
        """Pre-tokenize a complete text."""
        yield from self._split(text, final=True)[0]

    def split_stream(
        self, blocks: Iterable[str], min_chars: int = _BLOCK_CHARS
    ) -> Iterator[tuple[list[str], str | None]]:
        """Pre-tokenize text that arrives in pieces (lines, file blocks) with memory bounded by
        ``min_chars`` plus one piece. The result is the same as ``split("".join(blocks))``."""
        parts: list[str] = []  # text received but not yet split
        size = 0
        for block in blocks:
            parts.append(block)
            size += len(block)
            if size >= min_chars:
                # Split what we have, except a tail the next block could still change; keep that tail.
                items, rest = self._split("".join(parts), final=False)
                yield from items
                parts, size = [rest], len(rest)
        items, _ = self._split("".join(parts), final=True)  # the end of the text: nothing more can come
        yield from items

    def _split(self, text: str, final: bool) -> tuple[list[tuple[list[str], str | None]], str]:
        """Split ``text``; unless ``final``, hold back a tail that more text could still change
        (a possible special-token prefix, and the last two pre-tokens: a pre-token such as
        ``"'l"`` can regroup as ``"'ll"``) and return it as the second element."""
        end = len(text)  # text[:end] may be split now
        if not final:
            # "...<|endo" could become "<|endoftext|>" once the next block arrives: hold it back.
            for k in range(min(self._max_prefix, len(text)), 0, -1):
                if text[-k:] in self._special_prefixes:
                    end = len(text) - k  # the longest such suffix: cut before it
                    break
        items = []
        start = 0  # text[:start] is already in items
        if self.special_re is not None:
            for match in self.special_re.finditer(text):
                if match.end() > end:  # a special that crosses the hold-back point
                    end = match.start()
                    break
                # The pre-tokens of the stretch before this special, then the special itself.
                items.append((PRETOKEN_RE.findall(text, start, match.start()), match.group()))
                start = match.end()
        pretokens = PRETOKEN_RE.findall(text, start, end)  # the stretch after the last special
        if final:
            if pretokens or not items:
                items.append((pretokens, None))
            return items, ""
        # The last two pre-tokens may still change with more text ("'l" + "l" -> "'ll", " " + " x"
        # regroups whitespace), so they go back into the buffer with the held-back tail.
        held = 0
        if len(pretokens) > 2:
            held = len(pretokens[-1]) + len(pretokens[-2])
            items.append((pretokens[:-2], None))
        else:
            held = sum(map(len, pretokens))  # the pre-tokens cover the text, so lengths add up
        return items, text[end - held :]


def find_chunk_boundaries(
    path: str | Path, num_chunks: int, split_token: bytes, special_tokens: Sequence[str] = ()
) -> list[int]:
    """Byte offsets ``[0, ..., file size]`` cutting ``path`` into about ``num_chunks`` pieces,
    each cut placed just before an occurrence of ``split_token`` (found by seeking to the even
    split points and scanning forward). Fewer pieces come back if the token is rare.

    With ``special_tokens`` given, a cut is kept only where the longest-first special-token
    match really starts (not inside a longer special such as ``<|endoftext|><|endoftext|>``)."""
    size = os.path.getsize(path)
    if num_chunks <= 1 or size == 0 or not split_token:
        return [0, size]
    encoded = sorted((t.encode("utf-8") for t in special_tokens), key=len, reverse=True)
    specials_re = regex.compile(b"|".join(map(regex.escape, encoded))) if encoded else None
    step = size // num_chunks
    cuts = [0]
    with open(path, "rb") as f:
        for i in range(1, num_chunks):
            position = max(i * step, cuts[-1] + 1)  # the even split point (after the previous cut)
            while True:
                # Move forward to the next split token; a cut there starts the chunk with a special,
                # exactly where the pre-tokenizer would split anyway.
                position = _find(f, position, split_token, size)
                if position >= size or specials_re is None:
                    break
                if _special_starts_at(f, position, specials_re, len(encoded[0])):
                    break
                position += 1  # inside a longer special token: not a real boundary, keep looking
            if position >= size:
                break
            cuts.append(position)
    cuts.append(size)
    return cuts


def _find(f, position: int, token: bytes, size: int) -> int:
    """Offset of the first ``token`` at or after ``position`` (``size`` when there is none)."""
    f.seek(position)
    window = b""
    while True:
        block = f.read(1 << 16)
        if not block:
            return size
        # Keep the last len(token) - 1 bytes of the previous block: a token may straddle two blocks.
        window = window[len(window) - (len(token) - 1) :] + block if len(token) > 1 else block
        found = window.find(token)
        if found >= 0:
            return f.tell() - len(window) + found


def _special_starts_at(f, position: int, specials_re, max_len: int) -> bool:
    """Does a longest-first special-token scan have a match starting exactly at ``position``?
    Scans from ``max_len - 1`` bytes before it: no earlier match can reach ``position``."""
    start = max(0, position - max_len + 1)
    f.seek(start)
    window = f.read(position - start + max_len)
    for match in specials_re.finditer(window):
        if match.start() + start == position:
            return True
        if match.end() + start > position:
            return False  # a match that starts earlier covers the position
    return False


def iter_file_text(path: str | Path, start: int = 0, end: int | None = None) -> Iterator[str]:
    """Stream the UTF-8 text of bytes ``[start, end)`` of ``path`` in blocks."""
    # An incremental decoder: a block may end inside a multi-byte character; the decoder keeps the
    # partial bytes for the next block instead of failing.
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        f.seek(start)
        remaining = (os.path.getsize(path) if end is None else end) - start
        offset = start
        while remaining > 0:
            data = f.read(min(_READ_BYTES, remaining))
            if not data:
                break
            remaining -= len(data)
            try:
                yield decoder.decode(data, final=remaining <= 0)
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}: not valid UTF-8 near byte {offset + error.start}") from None
            offset += len(data)


def _count_pretokens(args: tuple[str, int, int, list[str]]) -> Counter[str]:
    """Worker: frequency of every pre-token in one byte range of a file."""
    path, start, end, special_tokens = args
    counts: Counter[str] = Counter()
    for pretokens, _special in PreTokenizer(special_tokens).split_stream(iter_file_text(path, start, end)):
        counts.update(pretokens)
    return counts


def count_pretokens(
    input_path: str | Path,
    special_tokens: Sequence[str],
    num_processes: int | None = None,
    progress: bool = False,
) -> Counter[str]:
    """Frequency of every pre-token of the file, counted in parallel over special-token chunks."""
    num_processes = num_processes or os.cpu_count() or 1
    size = os.path.getsize(input_path)
    split_token = split_token_for(special_tokens)
    num_chunks = -(-size // _MAX_CHUNK_BYTES)  # ceil: no chunk over the limit
    if num_processes > 1:
        num_chunks = max(num_processes * 4, num_chunks)  # several per process, for balance
    cuts = find_chunk_boundaries(input_path, num_chunks, split_token.encode("utf-8"), special_tokens)
    jobs = [(str(input_path), a, b, list(special_tokens)) for a, b in zip(cuts[:-1], cuts[1:])]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="pre-tokenizing", unit="chunk")
    if num_processes == 1 or len(jobs) == 1 or size < (1 << 20):  # a pool costs more than it saves
        return _sum_counters(map(_count_pretokens, jobs), bar)
    with multiprocessing.get_context().Pool(min(num_processes, len(jobs))) as pool:
        return _sum_counters(pool.imap_unordered(_count_pretokens, jobs), bar)


def _sum_counters(counters: Iterable[Counter[str]], bar=None) -> Counter[str]:
    total: Counter[str] = Counter()
    for counts in counters:
        total.update(counts)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return total
