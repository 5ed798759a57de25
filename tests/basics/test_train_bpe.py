"""Graders for BPE training: ``adapters.run_train_bpe``.

Checked against a hand-worked example and against ``bpe_reference.reference_train_bpe`` (recount
every pair after every merge) on real text: merges must be identical, in order.
"""

from __future__ import annotations

import pytest
import regex

from tests.basics.bpe_reference import ENDOFTEXT, reference_train_bpe

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


@pytest.fixture(scope="module")
def corpus_text() -> str:
    from basics.corpus import build_corpus

    return build_corpus().train.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, corpus_text) -> str:
    """~60 KB of the built-in corpus, cut at a document boundary."""
    end = corpus_text.index(ENDOFTEXT, 60_000)
    path = tmp_path_factory.mktemp("bpe") / "small.txt"
    path.write_text(corpus_text[:end], encoding="utf-8")
    return str(path)


def check_layout(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], specials: list[str]) -> None:
    """Ids 0..255 are the bytes, then one id per merge in order, then the special tokens."""
    assert sorted(vocab) == list(range(len(vocab)))
    assert [vocab[i] for i in range(256)] == [bytes([i]) for i in range(256)]
    assert [vocab[256 + i] for i in range(len(merges))] == [a + b for a, b in merges]
    assert [vocab[256 + len(merges) + i] for i in range(len(specials))] == [t.encode() for t in specials]


def test_hand_worked_example(adapters, tmp_path):
    # Pre-tokens "abab", " abab", " cd" (the special token splits the text, never merges).
    # Merge 1: (a,b) x4. Merge 2: (ab,ab) x2. Then every pair is seen once and ties go to the
    # greatest pair: (c,d) > (" ",abab), (" ",c); then (" ",cd) > (" ",abab); then (" ",abab).
    path = tmp_path / "tiny.txt"
    path.write_text("abab abab<|endoftext|> cd", encoding="utf-8")
    vocab, merges = adapters.run_train_bpe(str(path), 300, [ENDOFTEXT])
    assert merges == [(b"a", b"b"), (b"ab", b"ab"), (b"c", b"d"), (b" ", b"cd"), (b" ", b"abab")]
    assert len(vocab) == 256 + 5 + 1  # stops when no pair is left
    check_layout(vocab, merges, [ENDOFTEXT])


def test_tie_break_prefers_greatest_pair_including_prefixes(adapters, tmp_path):
    # Pre-tokens "xy", " xy", " x". Pairs (x,y) x2 and (" ",x) x2 tie: (x,y) is greater.
    # Then (" ",xy) and (" ",x) tie at 1: b"xy" > b"x" (a prefix sorts first), so (" ",xy) wins.
    path = tmp_path / "tie.txt"
    path.write_text("xy xy x", encoding="utf-8")
    _, merges = adapters.run_train_bpe(str(path), 256 + 10, [])
    assert merges == [(b"x", b"y"), (b" ", b"xy"), (b" ", b"x")]


def test_matches_reference_on_real_text(adapters, small_corpus):
    vocab, merges = adapters.run_train_bpe(small_corpus, 400, [ENDOFTEXT], num_processes=1)
    ref_vocab, ref_merges = reference_train_bpe(small_corpus, 400, [ENDOFTEXT])
    assert merges == ref_merges
    assert vocab == ref_vocab
    check_layout(vocab, merges, [ENDOFTEXT])


@pytest.mark.parametrize("vocab_size", [300, 420])
def test_plain_trainer_matches_the_fast_one(adapters, small_corpus, vocab_size):
    """The library's readable trainer and its fast one agree: same merges, same vocabulary."""
    fast = adapters.run_train_bpe(small_corpus, vocab_size, [ENDOFTEXT], num_processes=1)
    plain = adapters.run_train_bpe_reference(small_corpus, vocab_size, [ENDOFTEXT])
    assert plain[1] == fast[1] and plain[0] == fast[0]
    assert len(plain[1]) == vocab_size - 257


def test_matches_reference_on_unicode(adapters, tmp_path):
    text = (
        (
            "Übergrößenträger café naïve 東京都 東京 京都 🙂🙂 🙂 ñandú ñu — 'll 've's don't 42 4242 "
            "\t\n\n  trailing  \n" * 7
        )
        + ENDOFTEXT
        + "héllo wörld" * 5
    )
    path = tmp_path / "unicode.txt"
    path.write_text(text, encoding="utf-8")
    vocab, merges = adapters.run_train_bpe(str(path), 330, [ENDOFTEXT])
    assert merges == reference_train_bpe(path, 330, [ENDOFTEXT])[1]
    assert vocab[len(vocab) - 1] == ENDOFTEXT.encode()


def test_parallel_equals_serial(adapters, tmp_path, corpus_text):
    """Chunked multi-process pre-tokenization must not change the result (a file over 1 MB)."""
    end = corpus_text.index(ENDOFTEXT, 1_300_000)
    path = tmp_path / "big.txt"
    path.write_text(corpus_text[:end], encoding="utf-8")
    serial = adapters.run_train_bpe(str(path), 300, [ENDOFTEXT], num_processes=1)
    parallel = adapters.run_train_bpe(str(path), 300, [ENDOFTEXT], num_processes=2)
    assert serial == parallel


def test_special_tokens_never_merged(adapters, tmp_path):
    docs = ["the cat sat on the mat", "a cat<|pad|> and a hat", "mats and hats and cats"]
    path = tmp_path / "specials.txt"
    path.write_text((ENDOFTEXT + ENDOFTEXT).join(docs * 30), encoding="utf-8")
    specials = [ENDOFTEXT, "<|pad|>"]
    vocab, merges = adapters.run_train_bpe(str(path), 400, specials)
    for token in vocab.values():
        if token not in (b"<|endoftext|>", b"<|pad|>"):
            assert b"<|" not in token and b"|>" not in token, token
    check_layout(vocab, merges, specials)


def test_merges_stay_inside_pretokens(adapters, small_corpus):
    """No token may span a pre-token boundary: e.g. a letter followed by a space, or a word and
    the punctuation after it."""
    vocab, _ = adapters.run_train_bpe(small_corpus, 600, [ENDOFTEXT])
    for token in vocab.values():
        text = token.decode("utf-8", errors="ignore")
        assert not regex.search(r"\p{L} |\p{L}[.,;:()]|\S\n", text), token


def test_overlapping_special_tokens(adapters, tmp_path):
    double = ENDOFTEXT + ENDOFTEXT
    path = tmp_path / "double.txt"
    path.write_text(("low lower" + double + "lowest" + ENDOFTEXT) * 20, encoding="utf-8")
    vocab, merges = adapters.run_train_bpe(str(path), 300, [ENDOFTEXT, double])
    assert merges == reference_train_bpe(path, 300, [ENDOFTEXT, double])[1]
    assert double.encode() in vocab.values() and ENDOFTEXT.encode() in vocab.values()


def test_empty_corpus_gives_base_vocab(adapters, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    vocab, merges = adapters.run_train_bpe(str(path), 1000, [ENDOFTEXT])
    assert merges == []
    assert len(vocab) == 257 and vocab[256] == ENDOFTEXT.encode()


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def test_bad_input(adapters, tmp_path):
    path = tmp_path / "ok.txt"
    path.write_text("hello world", encoding="utf-8")
    with pytest.raises(FileNotFoundError) as excinfo:
        adapters.run_train_bpe(str(tmp_path / "missing.txt"), 300, [])
    assert "missing.txt" in one_line_error(excinfo)
    with pytest.raises(ValueError) as excinfo:
        adapters.run_train_bpe(str(path), 256, [ENDOFTEXT])  # no room for the special token
    assert "vocab_size" in one_line_error(excinfo)
    with pytest.raises(ValueError) as excinfo:
        adapters.run_train_bpe(str(path), 300, [ENDOFTEXT, ENDOFTEXT])
    assert "duplicate" in one_line_error(excinfo)
    with pytest.raises(ValueError) as excinfo:
        adapters.run_train_bpe(str(path), 300, [""])
    one_line_error(excinfo)


def test_invalid_utf8_is_a_clear_error(adapters, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 ol\u00e9 ".encode("latin-1") * 10)
    with pytest.raises(ValueError) as excinfo:
        adapters.run_train_bpe(str(path), 300, [ENDOFTEXT])
    assert "UTF-8" in one_line_error(excinfo)
