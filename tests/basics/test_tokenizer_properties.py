"""Property tests (hypothesis) for the Tokenizer, plus the encode_iterable memory test.

For arbitrary Unicode text with special tokens (and pieces of them) mixed in:
``decode(encode(s)) == s``; the ids equal tiktoken's and Hugging Face tokenizers' for the same
vocabulary; ``encode_iterable`` over lines, or over arbitrary pieces, equals ``encode`` of the whole.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.basics.bpe_reference import ENDOFTEXT, hf_tokenizer_from_files, write_vocab_merges
from tests.grading import child_env, load_adapters

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

DOUBLE = ENDOFTEXT + ENDOFTEXT
SPECIALS = [ENDOFTEXT, DOUBLE, "<|pad|>"]
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Real-looking words and spacing make merges fire; arbitrary text covers everything else.
pieces = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["the", " the", " function", "return", "'ll", "'s", "  ", "\n\n", " \n", "\t", "42", "é"]
    ),
    st.sampled_from(SPECIALS + ["<|", "|>", "<|endoftext", "endoftext|>", "<|pad"]),
)
texts = st.lists(pieces, max_size=25).map("".join)


@pytest.fixture(scope="module")
def basics_adapters(request):
    return load_adapters(request.config, "basics")


@pytest.fixture(scope="module")
def trained(basics_adapters, tmp_path_factory):
    from basics.corpus import build_corpus

    text = build_corpus().train.read_text(encoding="utf-8")
    path = tmp_path_factory.mktemp("props") / "train.txt"
    path.write_text(text[: text.index(ENDOFTEXT, 200_000)], encoding="utf-8")
    return basics_adapters.run_train_bpe(str(path), 700, [ENDOFTEXT])


@pytest.fixture(scope="module")
def tokenizer(basics_adapters, trained):
    return basics_adapters.get_tokenizer(*trained, SPECIALS)


@pytest.fixture(scope="module")
def peers(basics_adapters, tokenizer, tmp_path_factory):
    encoding = basics_adapters.tokenizer_to_tiktoken(tokenizer)
    files = basics_adapters.save_tokenizer(tokenizer, tmp_path_factory.mktemp("props-saved"))
    return encoding, hf_tokenizer_from_files(*files, SPECIALS)


@PROPERTY_SETTINGS
@given(text=texts)
def test_roundtrip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


@PROPERTY_SETTINGS
@given(text=texts)
def test_same_ids_as_tiktoken_and_hf(tokenizer, peers, text):
    encoding, hf = peers
    ids = tokenizer.encode(text)
    assert ids == encoding.encode(text, allowed_special="all")
    assert ids == hf.encode(text).ids


@PROPERTY_SETTINGS
@given(text=texts)
def test_encode_iterable_over_lines(tokenizer, text):
    assert list(tokenizer.encode_iterable(text.splitlines(keepends=True))) == tokenizer.encode(text)


@PROPERTY_SETTINGS
@given(text=texts, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_encode_iterable_over_any_pieces(tokenizer, text, cuts):
    """Pieces cut anywhere -- inside a word, a contraction, a whitespace run, a special token."""
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    chunks = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    assert list(tokenizer.encode_iterable(chunks)) == tokenizer.encode(text)


@pytest.mark.slow
def test_encode_iterable_memory_is_bounded(request, trained, tmp_path):
    """Stream a generated ~55 MB file through encode_iterable in a fresh process: peak RSS may
    grow by far less than the file's size (the whole file as a str would be 60+ MB)."""
    module = load_adapters(request.config, "basics").__name__
    write_vocab_merges(tmp_path / "vocab.json", *trained)
    script = textwrap.dedent(
        f"""
        import json, random
        from tests.basics.bpe_reference import read_vocab_merges
        from tests.grading import import_adapters, peak_resident_kib
        adapters = import_adapters({module!r})
        tok = adapters.get_tokenizer(*read_vocab_merges({str(tmp_path / "vocab.json")!r}), [{ENDOFTEXT!r}])
        rng = random.Random(0)
        words = ["the", "return", "value", "of", "function", "é", "东京", "42", "--", "\\n"]
        path = {str(tmp_path / "big.txt")!r}
        docs = [" ".join(rng.choice(words) + str(rng.randrange(300)) for _ in range(700)) for _ in range(300)]
        with open(path, "w", encoding="utf-8") as f:
            for i in range(11_000):
                f.write(docs[(i * 7) % len(docs)] + {ENDOFTEXT!r})
        tok.encode("warm up the caches " * 100)
        before = peak_resident_kib()
        count = 0
        with open(path, encoding="utf-8") as f:
            for _ in tok.encode_iterable(f):
                count += 1
        after = peak_resident_kib()
        import os
        print(json.dumps({{"size": os.path.getsize(path), "ids": count, "growth_kb": after - before}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=child_env()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["size"] >= 50_000_000 and stats["ids"] > 1_000_000
    assert stats["growth_kb"] < 40_000, stats  # < 40 MB for a 55 MB file


def test_a_long_run_without_spaces_encodes_in_near_linear_work(tokenizer):
    """A pre-token has no length limit (a minified file, a base64 blob): merging inside it must not
    rescan the whole token after every single merge. 4x the text may cost at most ~8x the CPU time
    (linear or n log n gives ~4x, quadratic 16x); CPU time and the best of three runs keep other load
    out of it. Each run gets new text, so a cache of encoded pre-tokens cannot answer it."""
    import random
    import time

    rng = random.Random(0)

    def cost(length: int) -> float:
        best = float("inf")
        for _ in range(3):
            text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(length))
            start = time.process_time()
            tokenizer.encode(text)
            best = min(best, time.process_time() - start)
        return best

    small, large = cost(8_000), cost(32_000)
    assert large < 8 * small + 0.05, f"8k letters: {small:.3f} s, 32k letters: {large:.3f} s"
