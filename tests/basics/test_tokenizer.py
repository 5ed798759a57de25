"""Graders for the Tokenizer through ``adapters.get_tokenizer`` and friends.

Parity: on real text (a slice of the built-in corpus's validation split, special tokens included)
our ids must equal those of tiktoken (an Encoding built from the same vocabulary, ids as ranks)
and of Hugging Face tokenizers (byte-level BPE built from our saved vocab.json/merges.txt), and a
vocabulary trained by Hugging Face must load from its own files and encode exactly as HF does.
Property tests (hypothesis) cover round trips and streaming; a memory test covers laziness.
"""

from __future__ import annotations

import itertools
import json

import pytest

from tests.basics.bpe_reference import ENDOFTEXT, gpt2_bytes_to_unicode, hf_tokenizer_from_files
from tests.grading import load_adapters

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

DOUBLE = ENDOFTEXT + ENDOFTEXT


@pytest.fixture(scope="module")
def basics_adapters(request):
    return load_adapters(request.config, "basics")


@pytest.fixture(scope="module")
def corpus_slices(tmp_path_factory):
    """(train file of ~300 KB, validation text of ~150 KB), both cut at document boundaries."""
    from basics.corpus import build_corpus

    paths = build_corpus()
    train = paths.train.read_text(encoding="utf-8")
    path = tmp_path_factory.mktemp("tokenizer") / "train.txt"
    path.write_text(train[: train.index(ENDOFTEXT, 300_000)], encoding="utf-8")
    validation = paths.validation.read_text(encoding="utf-8")
    return path, validation[: validation.index(ENDOFTEXT, 150_000) + len(ENDOFTEXT) + 2000]


@pytest.fixture(scope="module")
def trained(basics_adapters, corpus_slices):
    """(vocab, merges) of a 1000-token vocabulary trained on the corpus slice."""
    return basics_adapters.run_train_bpe(str(corpus_slices[0]), 1000, [ENDOFTEXT])


@pytest.fixture(scope="module")
def tokenizer(basics_adapters, trained):
    vocab, merges = trained
    return basics_adapters.get_tokenizer(vocab, merges, [ENDOFTEXT])


@pytest.fixture(scope="module")
def validation_text(corpus_slices) -> str:
    return corpus_slices[1]


@pytest.fixture(scope="module")
def saved_files(basics_adapters, tokenizer, tmp_path_factory):
    return basics_adapters.save_tokenizer(tokenizer, tmp_path_factory.mktemp("saved"))


# ---- round trips and parity -----------------------------------------------------------------


def test_roundtrip_real_text(tokenizer, validation_text):
    ids = tokenizer.encode(validation_text)
    assert tokenizer.decode(ids) == validation_text
    assert len(validation_text.encode()) / len(ids) > 2.0  # a 1000-token vocab compresses real text
    assert tokenizer.encode("") == [] and tokenizer.decode([]) == ""


def test_parity_with_tiktoken(basics_adapters, tokenizer, validation_text):
    assert ENDOFTEXT in validation_text
    encoding = basics_adapters.tokenizer_to_tiktoken(tokenizer)
    expected = encoding.encode(validation_text, allowed_special="all")
    assert tokenizer.encode(validation_text) == expected
    assert tokenizer.decode(expected) == encoding.decode(expected)


def test_parity_with_hf_tokenizers(tokenizer, saved_files, validation_text):
    hf = hf_tokenizer_from_files(*saved_files, [ENDOFTEXT])
    assert tokenizer.encode(validation_text) == hf.encode(validation_text).ids


def test_tiktoken_ranks_are_ids(basics_adapters, tokenizer, trained):
    vocab, merges = trained
    encoding = basics_adapters.tokenizer_to_tiktoken(tokenizer)
    for i in (0, 65, 255, 256, 300, 256 + len(merges) - 1):
        assert encoding.decode_single_token_bytes(i) == vocab[i]
    assert encoding.encode(ENDOFTEXT, allowed_special="all") == [len(vocab) - 1]


def test_loads_hf_trained_files(basics_adapters, corpus_slices, validation_text, tmp_path):
    """A vocabulary we did not make: HF's BPE trainer, saved by HF as vocab.json + merges.txt
    (with its "#version" header). Ours must load it and encode exactly as HF does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train([str(corpus_slices[0])], trainer)
    vocab_path, merges_path = hf.model.save(str(tmp_path))
    assert open(merges_path, encoding="utf-8").readline().startswith("#version")
    ours = basics_adapters.get_tokenizer_from_files(vocab_path, merges_path, [ENDOFTEXT])
    peer = hf_tokenizer_from_files(vocab_path, merges_path, [ENDOFTEXT])
    text = validation_text[:60_000]
    assert ours.encode(text) == peer.encode(text).ids
    assert ours.decode(ours.encode(text)) == text


def test_saved_files_are_gpt2_format(
    tokenizer, trained, saved_files, tmp_path, basics_adapters, validation_text
):
    vocab, merges = trained
    vocab_path, merges_path = saved_files
    table = gpt2_bytes_to_unicode()
    entries = json.loads(open(vocab_path, encoding="utf-8").read())
    assert entries == {"".join(table[b] for b in token): i for i, token in vocab.items()}
    assert entries["Ġ"] == ord(" ") and entries["Ċ"] == ord("\n")
    lines = [line for line in open(merges_path, encoding="utf-8").read().splitlines() if line]
    body = lines[1:] if lines[0].startswith("#version") else lines
    assert body == [f"{''.join(table[x] for x in a)} {''.join(table[x] for x in b)}" for a, b in merges]
    # The same merges without a header line load identically.
    bare = tmp_path / "merges.txt"
    bare.write_text("\n".join(body) + "\n", encoding="utf-8")
    reloaded = basics_adapters.get_tokenizer_from_files(vocab_path, bare, [ENDOFTEXT])
    text = validation_text[:20_000]
    assert reloaded.encode(text) == tokenizer.encode(text)


# ---- special tokens -------------------------------------------------------------------------


def test_overlapping_specials_longest_first(basics_adapters, trained):
    vocab, merges = trained
    tok = basics_adapters.get_tokenizer(vocab, merges, [ENDOFTEXT, DOUBLE])
    ids = tok.encode(f"a{DOUBLE}b{ENDOFTEXT}c{DOUBLE}{ENDOFTEXT}")
    single, double = tok.encode(ENDOFTEXT), tok.encode(DOUBLE)
    assert len(single) == 1 and len(double) == 1 and single != double
    assert ids == tok.encode("a") + double + tok.encode("b") + single + tok.encode("c") + double + single
    assert tok.decode(ids) == f"a{DOUBLE}b{ENDOFTEXT}c{DOUBLE}{ENDOFTEXT}"


def test_specials_missing_from_vocab_get_new_ids(basics_adapters, trained):
    vocab, merges = trained
    tok = basics_adapters.get_tokenizer(vocab, merges, [ENDOFTEXT, "<|pad|>", "<|user|>"])
    pad, user = tok.encode("<|pad|>"), tok.encode("<|user|>")
    assert len(pad) == 1 and len(user) == 1
    assert pad[0] >= len(vocab) and user[0] >= len(vocab) and pad != user
    assert tok.encode(ENDOFTEXT) == [len(vocab) - 1]  # already in the vocab: keeps its id
    assert tok.decode(tok.encode("x<|pad|>y")) == "x<|pad|>y"


def test_without_specials_the_text_is_ordinary(basics_adapters, trained):
    vocab, merges = trained
    tok = basics_adapters.get_tokenizer(vocab, merges)
    ids = tok.encode(f"hi{ENDOFTEXT}")
    assert len(ids) > 2 and tok.decode(ids) == f"hi{ENDOFTEXT}"
    assert len(vocab) - 1 not in ids


def test_decode_invalid_utf8_is_replaced(tokenizer, trained):
    vocab, _ = trained
    byte_id = {token: i for i, token in vocab.items()}
    assert tokenizer.decode([byte_id[b"\xe2"]]) == "\ufffd"  # the first of the three bytes of "€"
    assert tokenizer.decode(tokenizer.encode("€")) == "€"
    ids = tokenizer.encode("a") + [byte_id[b"\xff"]] + tokenizer.encode("b")
    assert tokenizer.decode(ids) == "a\ufffdb"


# ---- streaming and files ------------------------------------------------------------------


def test_encode_iterable_is_lazy(tokenizer):
    """Must yield ids from an endless source without reading it all."""
    endless = itertools.cycle(["the quick brown fox\n", "jumps over the lazy dog.\n", ENDOFTEXT])
    first = list(itertools.islice(tokenizer.encode_iterable(endless), 5000))
    assert len(first) == 5000
    text = "the quick brown fox\njumps over the lazy dog.\n" + ENDOFTEXT
    assert first[:50] == tokenizer.encode(text * 3)[:50]


def test_encode_iterable_over_a_file(tokenizer, validation_text, tmp_path):
    path = tmp_path / "val.txt"
    path.write_text(validation_text, encoding="utf-8")
    with open(path, encoding="utf-8", newline="") as f:
        assert list(tokenizer.encode_iterable(f)) == tokenizer.encode(validation_text)


@pytest.mark.parametrize("num_processes", [1, 2])
def test_encode_file_matches_encode(basics_adapters, tokenizer, validation_text, tmp_path, num_processes):
    path = tmp_path / "val.txt"
    path.write_text(validation_text * 3, encoding="utf-8")
    ids = basics_adapters.run_encode_file(tokenizer, str(path), num_processes)
    assert [int(i) for i in ids] == tokenizer.encode(validation_text * 3)


def test_encode_file_without_special_tokens(basics_adapters, trained, validation_text, tmp_path):
    """No special token to cut at: one chunk, same ids as encode."""
    tok = basics_adapters.get_tokenizer(*trained)
    path = tmp_path / "plain.txt"
    text = validation_text[:30_000]
    path.write_text(text, encoding="utf-8")
    ids = basics_adapters.run_encode_file(tok, str(path), 2)
    assert [int(i) for i in ids] == tok.encode(text)


def test_encode_file_never_cuts_inside_a_special(basics_adapters, trained, tmp_path):
    """Chunks are cut before "<|endoftext|>"; with the doubled token also special, a cut between
    its two halves would change the ids. Many short documents make such a cut likely."""
    tok = basics_adapters.get_tokenizer(*trained, [ENDOFTEXT, DOUBLE])
    text = "".join(f"doc {i} x" + (DOUBLE if i % 3 else ENDOFTEXT + DOUBLE) for i in range(3000))
    path = tmp_path / "double.txt"
    path.write_text(text, encoding="utf-8")
    ids = basics_adapters.run_encode_file(tok, str(path), 2)
    assert [int(i) for i in ids] == tok.encode(text)


def test_bad_files(basics_adapters, tmp_path, trained):
    with pytest.raises(FileNotFoundError):
        basics_adapters.get_tokenizer_from_files(tmp_path / "nope.json", tmp_path / "nope.txt")
    vocab, merges = trained
    with pytest.raises(ValueError):  # a merge whose parts are not in the vocab
        basics_adapters.get_tokenizer({i: bytes([i]) for i in range(256)}, [(b"ab", b"c")])


def test_load_or_train_default_tokenizer(basics_adapters, corpus_slices, tmp_path):
    out = tmp_path / "tok"
    first = basics_adapters.run_load_or_train_default_tokenizer(out, 300, corpus_slices[0], [ENDOFTEXT])
    files = sorted(p.name for p in out.iterdir())
    assert "vocab.json" in files and "merges.txt" in files
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = basics_adapters.run_load_or_train_default_tokenizer(out, 300, corpus_slices[0], [ENDOFTEXT])
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # reused, not retrained
    text = "Return the number of items in the container.<|endoftext|>"
    assert again.encode(text) == first.encode(text)
    assert first.encode(ENDOFTEXT) == [299]
    bigger = basics_adapters.run_load_or_train_default_tokenizer(out, 320, corpus_slices[0], [ENDOFTEXT])
    assert bigger.encode(ENDOFTEXT) == [319]  # another size: retrained
