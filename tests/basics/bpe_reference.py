"""Plain references for the tokenizer graders (they never import the implementation).

- ``reference_train_bpe``: BPE training the obvious way -- recount every pair after every merge.
- ``gpt2_bytes_to_unicode``: GPT-2's byte -> printable character table, as in its encoder.py.
- ``hf_tokenizer_from_files``: a Hugging Face ``tokenizers.Tokenizer`` (byte-level BPE, GPT-2
  pre-tokenizer) built from vocab.json/merges.txt, the real peer for parity tests.
- ``write_vocab_merges`` / ``read_vocab_merges``: a test-side (hex JSON) way to hand a vocabulary to
  a subprocess without relying on the implementation's file format.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"


def reference_pretokens(text: str, special_tokens: list[str]) -> Counter[tuple[bytes, ...]]:
    """Pre-token frequencies, each pre-token as a tuple of single bytes."""
    pieces = [text]
    if special_tokens:
        pattern = "|".join(regex.escape(t) for t in sorted(special_tokens, key=len, reverse=True))
        pieces = regex.split(pattern, text)
    counts: Counter[tuple[bytes, ...]] = Counter()
    for piece in pieces:
        for match in regex.finditer(GPT2_PATTERN, piece):
            counts[tuple(bytes([b]) for b in match.group().encode("utf-8"))] += 1
    return counts


def reference_train_bpe(
    input_path, vocab_size: int, special_tokens: list[str], prefer: str = "greatest"
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Recount all pairs after each merge; ties go to the greatest pair (``prefer="smallest"``
    is the deliberate bug used by broken_adapters.py)."""
    words = reference_pretokens(Path(input_path).read_text(encoding="utf-8"), special_tokens)
    merges: list[tuple[bytes, bytes]] = []
    while 256 + len(special_tokens) + len(merges) < vocab_size:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, count in words.items():
            for i in range(len(word) - 1):
                pairs[word[i], word[i + 1]] += count
        if not pairs:
            break
        top = max(pairs.values())
        tied = [pair for pair, count in pairs.items() if count == top]
        best = max(tied) if prefer == "greatest" else min(tied)
        merges.append(best)
        new_words: Counter[tuple[bytes, ...]] = Counter()
        for word, count in words.items():
            out: list[bytes] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for token in special_tokens:
        vocab[len(vocab)] = token.encode("utf-8")
    return vocab, merges


def gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table: printable bytes stand for themselves; the rest map to chr(256), chr(257), ..."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


def hf_tokenizer_from_files(vocab_path, merges_path, special_tokens: list[str]):
    """Hugging Face byte-level BPE (GPT-2 regex, no prefix space) from GPT-2-format files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE.from_file(str(vocab_path), str(merges_path)))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    if special_tokens:
        tokenizer.add_special_tokens(list(special_tokens))
    return tokenizer


def write_vocab_merges(path, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]]) -> None:
    data = {
        "vocab": {str(i): t.hex() for i, t in vocab.items()},
        "merges": [[a.hex(), b.hex()] for a, b in merges],
    }
    Path(path).write_text(json.dumps(data))


def read_vocab_merges(path) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    data = json.loads(Path(path).read_text())
    vocab = {int(i): bytes.fromhex(t) for i, t in data["vocab"].items()}
    merges = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in data["merges"]]
    return vocab, merges
