"""A plain BPE trainer with switches for the classic mistakes (used by the BPE mutants only)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import regex

from tests.basics.bpe_reference import GPT2_PATTERN


def pretokens(
    text: str, special_tokens: list[str], split_specials: bool, pattern: str = GPT2_PATTERN
) -> Counter:
    pieces = [text]
    if special_tokens and split_specials:
        pieces = regex.split("|".join(regex.escape(t) for t in special_tokens), text)
    counts: Counter = Counter()
    for piece in pieces:
        for match in regex.finditer(pattern, piece):
            counts[tuple(bytes([b]) for b in match.group().encode("utf-8"))] += 1
    return counts


def merge_word(word: tuple, pair: tuple, overlapping: bool) -> tuple:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(pair[0] + pair[1])
            i += 1 if overlapping else 2  # overlapping: "aaa" -> "aa","aa" (a merged byte used twice)
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train(
    input_path,
    vocab_size,
    special_tokens,
    prefer="greatest",
    split_specials=True,
    stale_counts=False,
    overlapping=False,
    specials_in_vocab=True,
    pattern=GPT2_PATTERN,
):
    special_tokens = list(special_tokens or [])
    words = pretokens(Path(input_path).read_text(encoding="utf-8"), special_tokens, split_specials, pattern)
    merges, pairs = [], None
    while 256 + len(special_tokens) + len(merges) < vocab_size:
        if pairs is None or not stale_counts:
            pairs = Counter()
            for word, count in words.items():
                for i in range(len(word) - 1):
                    pairs[word[i], word[i + 1]] += count
        else:
            del pairs[merges[-1]]  # stale: the merged pair is dropped, its neighbours never recounted
        if not pairs:
            break
        top = max(pairs.values())
        tied = [pair for pair, count in pairs.items() if count == top]
        best = max(tied) if prefer == "greatest" else min(tied)
        merges.append(best)
        new_words: Counter = Counter()
        for word, count in words.items():
            new_words[merge_word(word, best, overlapping)] += count
        words = new_words
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    if specials_in_vocab:
        for token in special_tokens:
            vocab[len(vocab)] = token.encode("utf-8")
    return vocab, merges
