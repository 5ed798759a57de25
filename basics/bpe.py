"""Byte-level BPE training: the plain algorithm first (``train_bpe_reference``), then the fast one
(``train_bpe``) that gives the same merges.

Follows the course handout, section 2 (BPE tokenizer training), which follows GPT-2 (Radford et
al., 2019) and Sennrich et al. (2016). The algorithm, on a worked example::

    text "low low lower"  ->  pre-tokens "low", " low", " lower" (once each), as bytes
    pair counts: (l,o) 3, (o,w) 3, (" ",l) 2, (w,e) 1, (e,r) 1
    merge 1: (o,w)  -- tied with (l,o) at 3; the greater pair wins
    merge 2: (l,ow) 3;  merge 3: (" ",low) 2;  then ties at 1 ...

and so on until the vocabulary has ``vocab_size`` entries.

Rules, exactly as the handout states them:

- start from the 256 byte values plus the special tokens; ``vocab_size`` counts both;
- split the text on the special tokens first, then pre-tokenize each piece with the GPT-2 regex
  (``basics.pretokenization``), so no merge crosses a special token or a pre-token boundary;
- ties go to the lexicographically greatest pair ``(bytes, bytes)``.

Vocabulary ids: 0..255 are the single bytes (id == byte value), merge ``i`` creates id ``256 + i``,
and the special tokens come last. With that order a token's id is also its tiktoken *rank*, so
``Tokenizer.to_tiktoken()`` needs no renumbering.

What makes ``train_bpe`` fast (same merges as the plain version, which recounts everything):

1. Pre-tokenization runs in parallel processes over chunks of the file (``count_pretokens``).
2. Pairs are counted over *unique* pre-tokens weighted by their frequency.
3. After a merge only the pre-tokens that contain the merged pair are rewritten (an index
   pair -> pre-tokens), and only the pair counts next to each merged occurrence change.
4. The best pair comes from a heap with lazy invalidation: counts of old pairs only ever go down,
   so a popped entry whose count is stale is pushed back with its current count.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from basics.pretokenization import PreTokenizer, check_special_tokens, count_pretokens

Token = TypeVar("Token", bound=Hashable)  # a token: bytes in the plain trainer, an int id in the fast one
Pair = tuple[int, int]

# ---------------------------------------------------------------------------------------------
# The plain algorithm
# ---------------------------------------------------------------------------------------------


def get_pair_counts(words: Mapping[tuple[Token, ...], int]) -> Counter[tuple[Token, Token]]:
    """How often each adjacent pair occurs, over pre-tokens ``words`` with their frequencies.

    >>> get_pair_counts({(b"l", b"o", b"w"): 2, (b"o", b"w"): 1})
    Counter({(b'o', b'w'): 3, (b'l', b'o'): 2})
    """
    pairs: Counter[tuple[Token, Token]] = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):  # (w0,w1), (w1,w2), ...
            pairs[pair] += n
    return pairs


def merge(word: tuple[Token, ...], pair: tuple[Token, Token], new: Token) -> tuple[Token, ...]:
    """Replace every occurrence of ``pair`` in ``word``, left to right, by the token ``new``.

    >>> merge((b"a", b"a", b"a"), (b"a", b"a"), b"aa")
    (b'aa', b'a')
    """
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new)
            i += 2  # both halves are consumed: "aaa" gives (aa, a), not (aa, aa)
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_bpe_reference(
    input_path: str | Path, vocab_size: int, special_tokens: Iterable[str] | None = None
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """The plain algorithm: one process, recount every pair after every merge, pick the best with
    ``max``. Same result as :func:`train_bpe`, for reading and for checking it."""
    specials = _check_arguments(input_path, vocab_size, special_tokens)
    text = Path(input_path).read_text(encoding="utf-8")
    # Each distinct pre-token as a tuple of one-byte tokens, with how often it occurs.
    words: Counter[tuple[bytes, ...]] = Counter()
    for pretokens, _special in PreTokenizer(specials).split(text):
        for pretoken in pretokens:
            words[tuple(bytes([b]) for b in pretoken.encode("utf-8"))] += 1
    merges: list[tuple[bytes, bytes]] = []
    while len(merges) < vocab_size - 256 - len(specials):
        # Recount every pair of every pre-token: O(corpus) per merge, what the fast trainer avoids.
        pairs = get_pair_counts(words)
        if not pairs:
            break  # every pre-token is one token already: nothing left to merge
        # The most frequent pair; among equals the lexicographically greatest (bytes, bytes).
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        # Two pre-tokens can become equal after a merge, so add their counts up.
        merged: Counter[tuple[bytes, ...]] = Counter()
        for word, n in words.items():
            merged[merge(word, best, best[0] + best[1])] += n
        words = merged
    return _build_vocab(merges, specials), merges


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
    """Ids: the 256 bytes, then one per merge in order, then the special tokens."""
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for token in specials:
        vocab[len(vocab)] = token.encode("utf-8")
    return vocab


# ---------------------------------------------------------------------------------------------
# The fast trainer
# ---------------------------------------------------------------------------------------------


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
    num_merges = vocab_size - 256 - len(specials)  # the 256 bytes and the specials take their ids first
    # Count each distinct pre-token once (in parallel), then work on the distinct ones only.
    words, freqs = _unique_words(count_pretokens(input_path, specials, num_processes, progress))
    pair_counts, where = _index_pairs(words, freqs)  # counted once; merges then update them in place
    token_bytes = [bytes([i]) for i in range(256)]  # id -> bytes, grows by one per merge
    sort_key = [_descending(t) for t in token_bytes]  # id -> heap tie-break key

    def entry(pair: Pair) -> tuple:  # the heap orders by count, then by the greater pair
        return (-pair_counts[pair], sort_key[pair[0]], sort_key[pair[1]], *pair)

    heap = [entry(pair) for pair in pair_counts]  # a max-heap by count, as a min-heap of negated counts
    heapq.heapify(heap)
    merges: list[tuple[bytes, bytes]] = []
    bar = _progress_bar(progress, num_merges)
    while len(merges) < num_merges and heap:
        # The smallest entry: the greatest count, ties broken towards the greatest (bytes, bytes) pair.
        negative, _, _, a, b = heapq.heappop(heap)
        current = pair_counts.get((a, b), 0)  # the truth; the heap entry may be older
        if current != -negative:  # stale entry: its count went down since it was pushed
            if current > 0:  # still present: back in the queue with its true count
                heapq.heappush(heap, entry((a, b)))
            continue
        # Stale entries only over-state a count (old pairs only lose counts, new pairs are pushed
        # fresh), so the first entry whose count is current really is the best pair.
        # (a, b) is the most frequent pair (ties: the greatest): it becomes the new token `new`.
        new = len(token_bytes)
        merges.append((token_bytes[a], token_bytes[b]))
        token_bytes.append(token_bytes[a] + token_bytes[b])
        sort_key.append(_descending(token_bytes[new]))
        # Only pairs with `new` in them gained counts: push those; lowered counts are caught lazily.
        for pair in _merge_pair(words, freqs, pair_counts, where, a, b, new):
            if pair_counts[pair] > 0:
                heapq.heappush(heap, entry(pair))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return _build_vocab(merges, specials), merges


def _unique_words(counts: Counter[str]) -> tuple[list[list[int]], list[int]]:
    """Each distinct pre-token as a list of byte ids (id == byte value), and its frequency."""
    words: list[list[int]] = []
    freqs: list[int] = []
    for text, n in counts.items():
        ids = list(text.encode("utf-8"))
        if len(ids) > 1:  # a single byte has no pairs and can never change
            words.append(ids)
            freqs.append(n)
    return words, freqs


def _index_pairs(words: list[list[int]], freqs: list[int]) -> tuple[dict[Pair, int], dict[Pair, set[int]]]:
    """Pair counts (weighted by word frequency) and the index pair -> words that hold it."""
    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for index, (word, n) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += n  # a word seen n times contributes each of its pairs n times
            where[pair].add(index)  # so a merge visits only the words that hold its pair
    return pair_counts, where


def _descending(token: bytes) -> tuple[int, ...]:
    """A key that sorts byte strings in *reverse* lexicographic order (so a min-heap pops the
    greatest first): invert each byte, and end with 256 so a prefix sorts after its extensions."""
    return (*(255 - x for x in token), 256)


def _progress_bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="BPE merges", unit="merge")


def _merge_pair(
    words: list[list[int]],
    freqs: list[int],
    pair_counts: dict[Pair, int],
    where: dict[Pair, set[int]],
    a: int,
    b: int,
    new: int,
) -> set[Pair]:
    """Replace every ``a b`` by ``new`` in the words that hold it; update the pair counts and the
    index. Returns the pairs that contain ``new`` (the only counts that went up).

    The incremental update: merging one occurrence changes only its neighbours' pairs. With a word
    of frequency n,

        x a b y  ->  x Z y     (Z = new)
        (x,a) -= n   (b,y) -= n   (x,Z) += n   (Z,y) += n   and (a,b) disappears

    e.g. "lower" with (o,w) -> ow: (l,o) and (w,e) lose n, (l,ow) and (ow,e) gain n. Every other
    pair of the word keeps its count, so no word is recounted.
    """
    touched: set[Pair] = set()
    # pop: after this merge no word holds (a, b); the index entry goes with it.
    for index in where.pop((a, b)):
        merged = _merge_word(words[index], a, b, new)
        if merged is None:
            continue  # a stale index entry: an earlier merge removed the pair from this word
        words[index], lost, gained = merged
        n = freqs[index]  # every occurrence in this word counts n times
        for pair in lost:
            pair_counts[pair] -= n
        for pair in gained:
            pair_counts[pair] += n
            where[pair].add(index)
        touched.update(gained)
    # (a, b) is gone from every word, whatever the updates above left in its count: drop it whole.
    del pair_counts[(a, b)]
    return touched


def _merge_word(word: list[int], a: int, b: int, new: int) -> tuple[list[int], list[Pair], list[Pair]] | None:
    """``word`` with every ``a b`` replaced by ``new``, left to right; the neighbour pairs lost,
    (x,a) and (b,y), and gained, (x,new) and (new,y), once per occurrence. None if ``word`` has no
    ``a b``."""
    last = len(word) - 1
    out: list[int] = []  # the merged word, built left to right
    lost: list[Pair] = []
    gained: list[Pair] = []
    merged = False
    i = 0  # word[:i] is already in out
    while True:
        try:
            j = word.index(a, i)  # jump to the next `a` at C speed: long words cost little
        except ValueError:
            break
        if j >= last:
            break  # `a` is the last token: no `b` after it
        if word[j + 1] != b:  # an `a` not followed by `b`: copy through it and search on
            out.extend(word[i : j + 1])
            i = j + 1
            continue
        out.extend(word[i:j])
        if out:  # a left neighbour x (already merged, if it was itself an `a b`: "a b a b" -> "Z Z")
            # In "a b a b" the first occurrence recorded gained (Z,a); here (Z,a) is lost again, so
            # the net change is -(b,a) +(Z,Z), as a recount would find.
            lost.append((out[-1], a))
            gained.append((out[-1], new))
        if j + 1 < last:  # a right neighbour y (still the original token)
            lost.append((b, word[j + 2]))
            gained.append((new, word[j + 2]))
        out.append(new)
        merged = True
        i = j + 2
    if not merged:
        return None
    out.extend(word[i:])  # the tail after the last occurrence
    return out, lost, gained
