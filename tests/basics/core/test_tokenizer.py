"""Core graders for BPE training and the tokenizer (assignment 1, section 2), through
``run_train_bpe`` and ``get_tokenizer``.

Training is graded on what the handout fixes: the merges, in order (ties to the lexicographically
greatest pair), and the vocabulary's *values* -- any id layout is accepted. The expected merges for
``fixtures/bpe_train.txt`` come from a plain reference trainer (recount every pair after every
merge). The tokenizer is handed a vocabulary in a layout unlike ours (the special token at id 0)
and must give the ids that tiktoken and Hugging Face ``tokenizers`` give for that same vocabulary.
Property tests (hypothesis, derandomized) cover arbitrary text with special tokens mixed in.
"""

from __future__ import annotations

import itertools

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.basics.core.common import (
    ENDOFTEXT,
    FIXTURES,
    expected_bpe,
    hf_peer,
    read_fixture,
    shuffled_layout,
    tiktoken_peer,
)
from tests.grading import load_adapters

pytestmark = pytest.mark.core
DOUBLE = ENDOFTEXT + ENDOFTEXT


def _values(vocab: dict[int, bytes]) -> list[bytes]:
    values = list(vocab.values())
    assert len(set(values)) == len(values), "the vocabulary holds a token twice"
    return values


# ------------------------------------------------------------------------------------ train_bpe


@pytest.mark.points(3, problem="train_bpe")
def test_train_bpe_hand_worked_example(adapters, tmp_path):
    # Pre-tokens "abab", " abab", " cd" (the special token splits the text and is never merged).
    # Merge 1: (a,b) x4. Merge 2: (ab,ab) x2. Then every pair occurs once and ties go to the greatest
    # pair: (c,d), then (" ",cd) > (" ",abab), then (" ",abab). Then nothing is left to merge.
    path = tmp_path / "tiny.txt"
    path.write_text("abab abab<|endoftext|> cd", encoding="utf-8")
    vocab, merges = adapters.run_train_bpe(str(path), 300, [ENDOFTEXT])
    assert merges == [(b"a", b"b"), (b"ab", b"ab"), (b"c", b"d"), (b" ", b"cd"), (b" ", b"abab")]
    expected = {bytes([i]) for i in range(256)} | {a + b for a, b in merges} | {ENDOFTEXT.encode()}
    assert set(_values(vocab)) == expected


@pytest.mark.points(2, problem="train_bpe")
def test_train_bpe_tie_break_with_prefixes(adapters, tmp_path):
    # Pre-tokens "xy", " xy", " x": (x,y) and (" ",x) tie at 2 and (x,y) is greater; then
    # (" ",xy) and (" ",x) tie at 1, and b"xy" > b"x" (a prefix sorts first).
    path = tmp_path / "tie.txt"
    path.write_text("xy xy x", encoding="utf-8")
    _, merges = adapters.run_train_bpe(str(path), 256 + 10, [])
    assert merges == [(b"x", b"y"), (b" ", b"xy"), (b" ", b"x")]


@pytest.mark.points(6, problem="train_bpe")
def test_train_bpe_matches_reference(adapters):
    merges, values, vocab_size = expected_bpe()
    vocab, got = adapters.run_train_bpe(str(FIXTURES / "bpe_train.txt"), vocab_size, [ENDOFTEXT])
    assert got == merges
    assert set(_values(vocab)) == values and len(vocab) == vocab_size


@pytest.mark.points(2, problem="train_bpe")
def test_train_bpe_special_tokens(adapters, tmp_path):
    docs = ["the cat sat on the mat", "a cat<|pad|> and a hat", "mats and hats and cats"]
    path = tmp_path / "specials.txt"
    path.write_text(DOUBLE.join(docs * 30), encoding="utf-8")
    vocab, _ = adapters.run_train_bpe(str(path), 330, [ENDOFTEXT, "<|pad|>"])
    values = _values(vocab)
    assert ENDOFTEXT.encode() in values and b"<|pad|>" in values
    for token in values:
        if token not in (ENDOFTEXT.encode(), b"<|pad|>"):
            assert b"<|" not in token and b"|>" not in token, token


@pytest.mark.points(2, problem="train_bpe")
def test_train_bpe_merges_stay_inside_pretokens(adapters):
    """No token spans a pre-token boundary (a letter then a space, a word then punctuation, ...)."""
    merges, _, vocab_size = expected_bpe()
    vocab, _ = adapters.run_train_bpe(str(FIXTURES / "bpe_train.txt"), vocab_size, [ENDOFTEXT])
    for token in vocab.values():
        text = token.decode("utf-8", errors="ignore")
        assert not regex.search(r"\p{L} |\p{L}[.,;:()]|\S\n", text), token


# ------------------------------------------------------------------------------------ tokenizer


@pytest.fixture(scope="module")
def layout():
    """(vocab, merges, special tokens) of the reference vocabulary, special token at id 0."""
    merges, _, _ = expected_bpe()
    return shuffled_layout(merges, [ENDOFTEXT]), merges, [ENDOFTEXT]


@pytest.fixture(scope="module")
def tokenizer(request, layout):
    return load_adapters(request.config, "basics", core=True).get_tokenizer(*layout)


@pytest.fixture(scope="module")
def peers(layout):
    vocab, merges, specials = layout
    return tiktoken_peer(vocab, specials), hf_peer(vocab, merges, specials)


@pytest.fixture(scope="module")
def sample() -> str:
    return read_fixture("encode_sample.txt")


@pytest.mark.points(3, problem="tokenizer")
def test_tokenizer_round_trip(tokenizer, sample):
    assert tokenizer.decode(tokenizer.encode(sample)) == sample
    assert tokenizer.encode("") == [] and tokenizer.decode([]) == ""


@pytest.mark.points(4, problem="tokenizer")
def test_tokenizer_ids_equal_tiktoken_and_hf(tokenizer, peers, sample):
    encoding, hf = peers
    ids = tokenizer.encode(sample)
    assert ids == encoding.encode(sample, allowed_special="all")
    assert ids == hf.encode(sample).ids
    assert ids[-1] == 0  # the sample ends with the special token, whose id here is 0


@pytest.mark.points(2, problem="tokenizer")
def test_tokenizer_overlapping_special_tokens(adapters, layout):
    vocab, merges, _ = layout
    tok = adapters.get_tokenizer(vocab, merges, [ENDOFTEXT, DOUBLE])
    text = f"a{DOUBLE}b{ENDOFTEXT}c{DOUBLE}{ENDOFTEXT}"
    ids = tok.encode(text)
    single, double = tok.encode(ENDOFTEXT), tok.encode(DOUBLE)
    assert len(single) == 1 and len(double) == 1 and single != double
    assert ids == tok.encode("a") + double + tok.encode("b") + single + tok.encode("c") + double + single
    assert tok.decode(ids) == text


@pytest.mark.points(1, problem="tokenizer")
def test_tokenizer_without_special_tokens(adapters, layout):
    vocab, merges, _ = layout
    tok = adapters.get_tokenizer(vocab, merges, None)
    ids = tok.encode(f"hi{ENDOFTEXT}")
    assert 0 not in ids and len(ids) > 2 and tok.decode(ids) == f"hi{ENDOFTEXT}"


@pytest.mark.points(1, problem="tokenizer")
def test_tokenizer_decode_replaces_invalid_utf8(tokenizer, layout):
    ids = {token: i for i, token in layout[0].items()}
    assert tokenizer.decode([ids[b"\xe2"]]) == "\ufffd"  # the first of the three bytes of "€"
    assert tokenizer.decode(tokenizer.encode("a") + [ids[b"\xff"]] + tokenizer.encode("b")) == "a\ufffdb"


@pytest.mark.points(2, problem="tokenizer")
def test_encode_iterable_over_a_file(tokenizer, sample):
    """Reading a file line by line must give the ids of the whole text (also at line breaks)."""
    with open(FIXTURES / "encode_sample.txt", encoding="utf-8", newline="") as f:
        assert list(tokenizer.encode_iterable(f)) == tokenizer.encode(sample)


def _endless(lines: list[str], limit: int = 100_000):
    """``lines`` forever -- until a reader has taken ``limit`` of them to give a few thousand ids: then
    the grader fails (a reader that is not lazy would otherwise hang, filling memory)."""
    for count, line in enumerate(itertools.cycle(lines)):
        if count == limit:
            pytest.fail(f"encode_iterable read {limit} lines before giving 3000 ids: it is not lazy", False)
        yield line


@pytest.mark.points(1, problem="tokenizer")
def test_encode_iterable_is_lazy(tokenizer):
    endless = _endless(["the quick brown fox\n", "jumps over the lazy dog.\n", ENDOFTEXT])
    first = list(itertools.islice(tokenizer.encode_iterable(endless), 3000))
    assert len(first) == 3000
    text = "the quick brown fox\njumps over the lazy dog.\n" + ENDOFTEXT
    assert first[:40] == tokenizer.encode(text * 3)[:40]


pieces = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["the", " the", " function", "'ll", "'s", "  ", "\n\n", " \n", "\t", "42", "é"]),
    st.sampled_from([ENDOFTEXT, "<|", "|>", "<|endoftext", "endoftext|>"]),
)
texts = st.lists(pieces, max_size=20).map("".join)


@pytest.mark.points(2, problem="tokenizer")
@settings(max_examples=100)
@given(text=texts)
def test_tokenizer_properties(tokenizer, peers, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert ids == peers[0].encode(text, allowed_special="all")
    assert list(tokenizer.encode_iterable(text.splitlines(keepends=True))) == ids
