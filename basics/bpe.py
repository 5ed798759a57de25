"""Byte-level BPE training: ``train_bpe`` and the pre-tokenizer it shares with ``Tokenizer``.

Follows the course handout, section 2 (BPE tokenizer training), which follows GPT-2 (Radford et
al., 2019) and Sennrich et al. (2016). The algorithm, on a worked example::

    text "low low lower"  ->  pre-tokens "low", " low", " lower" (once each), as bytes
    pair counts: (l,o) 3, (o,w) 3, (" ",l) 2, (w,e) 1, (e,r) 1
    merge 1: (o,w)  -- tied with (l,o) at 3; the greater pair wins
    merge 2: (l,ow) 3;  merge 3: (" ",low) 2;  then ties at 1 ...

and so on until the vocabulary has ``vocab_size`` entries.

Rules, exactly as the handout states them:

- start from the 256 byte values plus the special tokens; ``vocab_size`` counts both;
- split the text on the special tokens first, then pre-tokenize each piece with the GPT-2 regex,
  so no merge crosses a special token or a pre-token boundary;
- ties go to the lexicographically greatest pair ``(bytes, bytes)``.

Vocabulary ids: 0..255 are the single bytes (id == byte value), merge ``i`` creates id ``256 + i``,
and the special tokens come last. With that order a token's id is also its tiktoken *rank*, so
``Tokenizer.to_tiktoken()`` needs no renumbering.

What makes it fast (the slow, obviously-correct version is ``train_bpe_reference`` below):

1. Pre-tokenization runs in parallel processes over byte ranges of the file cut just before a
   special token; each worker streams its range in blocks, so no process holds the whole corpus.
2. Pairs are counted over *unique* pre-tokens weighted by their frequency.
3. After a merge only the pre-tokens that contain the merged pair are rewritten (an index
   pair -> pre-tokens), and only the pair counts they touch change.
4. The best pair comes from a heap with lazy invalidation: counts of old pairs only ever go down,
   so a popped entry whose count is stale is pushed back with its current count.

Simplification: a file without special tokens is pre-tokenized by one process (there is no safe
place to cut it without looking at the regex's context); it is still streamed.
"""

from __future__ import annotations

import codecs
import heapq
import multiprocessing
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import regex

# The GPT-2 pre-tokenizer pattern (contractions, letters, numbers, other symbols, whitespace).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN_RE = regex.compile(GPT2_PATTERN)

_BLOCK_CHARS = 1 << 19  # pre-tokenize streamed text in blocks of about this many characters
_READ_BYTES = 1 << 19  # read files in blocks of this many bytes (small blocks: lower peak memory)
_MAX_CHUNK_BYTES = 16 << 20  # no worker chunk larger than this (when specials allow cutting)


# ---------------------------------------------------------------------------------------------
# Pre-tokenization (shared with basics.tokenizer)
# ---------------------------------------------------------------------------------------------


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
        parts: list[str] = []
        size = 0
        for block in blocks:
            parts.append(block)
            size += len(block)
            if size >= min_chars:
                items, rest = self._split("".join(parts), final=False)
                yield from items
                parts, size = [rest], len(rest)
        items, _ = self._split("".join(parts), final=True)
        yield from items

    def _split(self, text: str, final: bool) -> tuple[list[tuple[list[str], str | None]], str]:
        """Split ``text``; unless ``final``, hold back a tail that more text could still change
        (a possible special-token prefix, and the last two pre-tokens: a pre-token such as
        ``"'l"`` can regroup as ``"'ll"``) and return it as the second element."""
        end = len(text)
        if not final:
            for k in range(min(self._max_prefix, len(text)), 0, -1):
                if text[-k:] in self._special_prefixes:
                    end = len(text) - k  # the longest such suffix: cut before it
                    break
        items = []
        start = 0
        if self.special_re is not None:
            for match in self.special_re.finditer(text):
                if match.end() > end:  # a special that crosses the hold-back point
                    end = match.start()
                    break
                items.append((PRETOKEN_RE.findall(text, start, match.start()), match.group()))
                start = match.end()
        pretokens = PRETOKEN_RE.findall(text, start, end)
        if final:
            if pretokens or not items:
                items.append((pretokens, None))
            return items, ""
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
            position = max(i * step, cuts[-1] + 1)
            while True:
                position = _find(f, position, split_token, size)
                if position >= size or specials_re is None:
                    break
                if _special_starts_at(f, position, specials_re, len(encoded[0])):
                    break
                position += 1
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
    split_token = "<|endoftext|>" if "<|endoftext|>" in special_tokens else (special_tokens or [""])[0]
    num_chunks = -(-size // _MAX_CHUNK_BYTES)  # ceil: no chunk over the limit
    if num_processes > 1:
        num_chunks = max(num_processes * 4, num_chunks)  # several per process, for balance
    cuts = find_chunk_boundaries(input_path, num_chunks, split_token.encode("utf-8"), special_tokens)
    jobs = [(str(input_path), a, b, list(special_tokens)) for a, b in zip(cuts[:-1], cuts[1:])]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="pre-tokenizing", unit="chunk")
    if num_processes == 1 or len(jobs) == 1 or size < (1 << 20):
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


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _check_arguments(
    input_path: str | Path, vocab_size: int, special_tokens: Iterable[str] | None
) -> list[str]:
    specials = check_special_tokens(special_tokens)
    if not Path(input_path).is_file():
        raise FileNotFoundError(f"training corpus not found: {input_path}")
    if not isinstance(vocab_size, int) or vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size must be an int >= 256 + {len(specials)} special tokens = {256 + len(specials)}, got {vocab_size!r}"
        )
    return specials


def _build_vocab(merges: list[tuple[bytes, bytes]], specials: list[str]) -> dict[int, bytes]:
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for token in specials:
        vocab[len(vocab)] = token.encode("utf-8")
    return vocab


def _descending(token: bytes) -> tuple[int, ...]:
    """A key that sorts byte strings in *reverse* lexicographic order (so a min-heap pops the
    greatest first): invert each byte, and end with 256 so a prefix sorts after its extensions."""
    return (*(255 - x for x in token), 256)


def train_bpe(
    input_path: str | Path,
    vocab_size: int,
    special_tokens: Iterable[str] | None = None,
    *,
    num_processes: int | None = None,
    progress: bool = False,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on the UTF-8 text file ``input_path``.

    Returns ``(vocab, merges)``: ``vocab`` maps id -> token bytes (bytes 0..255, then one id per
    merge, then the special tokens); ``merges`` lists the merged pairs in creation order.
    ``num_processes`` (default: all cores) pre-tokenize in parallel; ``progress`` shows tqdm bars.
    """
    specials = _check_arguments(input_path, vocab_size, special_tokens)
    num_merges = vocab_size - 256 - len(specials)
    counts = count_pretokens(input_path, specials, num_processes, progress)

    # Unique pre-tokens as lists of token ids (ids 0..255 are the bytes), with their frequencies.
    words: list[list[int]] = []
    freqs: list[int] = []
    for text, n in counts.items():
        ids = list(text.encode("utf-8"))
        if len(ids) > 1:  # a single byte has no pairs
            words.append(ids)
            freqs.append(n)
    del counts

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> indices of words holding it
    for index, (word, n) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += n
            where[pair].add(index)

    token_bytes = [bytes([i]) for i in range(256)]
    sort_key = [_descending(t) for t in token_bytes]
    heap = [(-n, sort_key[a], sort_key[b], a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_merges, desc="BPE merges", unit="merge")
    while len(merges) < num_merges and heap:
        negative, _, _, a, b = heapq.heappop(heap)
        current = pair_counts.get((a, b), 0)
        if current != -negative:  # stale entry: its count went down since it was pushed
            if current > 0:
                heapq.heappush(heap, (-current, sort_key[a], sort_key[b], a, b))
            continue
        new = len(token_bytes)
        merges.append((token_bytes[a], token_bytes[b]))
        token_bytes.append(token_bytes[a] + token_bytes[b])
        sort_key.append(_descending(token_bytes[new]))
        touched = _merge_pair(words, freqs, pair_counts, where, a, b, new)
        for pair in touched:
            n = pair_counts[pair]
            if n > 0:
                heapq.heappush(heap, (-n, sort_key[pair[0]], sort_key[pair[1]], pair[0], pair[1]))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return _build_vocab(merges, specials), merges


def _merge_pair(
    words: list[list[int]],
    freqs: list[int],
    pair_counts: dict[tuple[int, int], int],
    where: dict[tuple[int, int], set[int]],
    a: int,
    b: int,
    new: int,
) -> set[tuple[int, int]]:
    """Replace every ``a b`` by ``new`` in the words that hold it; update the pair counts and the
    index. Returns the pairs that contain ``new`` (the only counts that went up)."""
    # Only the neighbours of each merged occurrence change: with x a b y becoming x new y, the
    # pairs (x,a), (a,b), (b,y) lose this word's frequency and (x,new), (new,y) gain it.
    # ``list.index`` jumps to the next ``a`` at C speed, so long words cost little.
    touched: set[tuple[int, int]] = set()
    for index in where.pop((a, b)):
        word = words[index]
        n = freqs[index]
        last = len(word) - 1
        out: list[int] = []
        merged = False
        i = 0  # word[:i] is already in out
        while True:
            try:
                j = word.index(a, i)
            except ValueError:
                break
            if j >= last:
                break
            if word[j + 1] != b:
                out.extend(word[i : j + 1])
                i = j + 1
                continue
            out.extend(word[i:j])
            if out:
                x = out[-1]
                pair_counts[x, a] -= n
                pair_counts[x, new] += n
                where[x, new].add(index)
                touched.add((x, new))
            if j + 1 < last:
                y = word[j + 2]
                pair_counts[b, y] -= n
                pair_counts[new, y] += n
                where[new, y].add(index)
                touched.add((new, y))
            out.append(new)
            merged = True
            i = j + 2
        if not merged:
            continue  # a stale index entry: the word no longer holds the pair
        out.extend(word[i:])
        words[index] = out
    del pair_counts[(a, b)]
    return touched


def train_bpe_reference(
    input_path: str | Path, vocab_size: int, special_tokens: Iterable[str] | None = None
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """The plain version of :func:`train_bpe`: one process, recount every pair after every merge,
    pick the best with ``max``. Same result, for reading and for checking the fast one."""
    specials = _check_arguments(input_path, vocab_size, special_tokens)
    text = Path(input_path).read_text(encoding="utf-8")
    counts: Counter[tuple[bytes, ...]] = Counter()
    for pretokens, _ in PreTokenizer(specials).split(text):
        for pretoken in pretokens:
            counts[tuple(bytes([x]) for x in pretoken.encode("utf-8"))] += 1
    merges: list[tuple[bytes, bytes]] = []
    while len(merges) < vocab_size - 256 - len(specials):
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, n in counts.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], pair))  # most frequent, then greatest
        merges.append(best)
        updated: Counter[tuple[bytes, ...]] = Counter()
        for word, n in counts.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            updated[tuple(out)] += n
        counts = updated
    return _build_vocab(merges, specials), merges
