"""Graders for get_batch (statistics of start positions, x/y shift, devices) and corpus tokenization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

EOS = "<|endoftext|>"


class ByteTokenizer:
    """A stand-in tokenizer: id = byte value + ``offset``, and one id for <|endoftext|>.

    Defined at module level so worker processes can unpickle it.
    """

    def __init__(self, offset: int = 0, vocab_size: int = 257):
        self.offset = offset
        self.eos_id = vocab_size - 1
        self.vocab = {i: f"<unused{i}>".encode() for i in range(vocab_size)}  # len(vocab) is the size
        self.vocab |= {i + offset: bytes([i]) for i in range(256)} | {self.eos_id: EOS.encode()}
        self.vocab_size = vocab_size
        self.special_tokens = [EOS]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(text.split(EOS)):
            if i:
                ids.append(self.eos_id)
            ids.extend(b + self.offset for b in piece.encode("utf-8"))
        return ids

    def encode_iterable(self, texts):
        for text in texts:
            yield from self.encode(text)

    def __len__(self) -> int:
        return self.vocab_size


# ----------------------------------------------------------------------------- get_batch


def test_get_batch_shapes_dtype_and_shift(adapters):
    dataset = np.arange(1000, dtype=np.int64)
    x, y = adapters.run_get_batch(dataset, 16, 12, "cpu")
    assert x.shape == y.shape == (16, 12)
    assert x.dtype == y.dtype == torch.int64
    assert x.device.type == "cpu"
    # On arange, each row is consecutive and the targets are the inputs shifted by one.
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)
    assert torch.equal(y, x + 1)


def test_get_batch_start_positions_are_uniform_over_every_valid_start(adapters):
    n, context_length = 100, 7
    dataset = np.arange(n)
    starts = torch.cat(
        [adapters.run_get_batch(dataset, 2000, context_length, "cpu")[0][:, 0] for _ in range(10)]
    )
    # Valid starts are 0 .. n - context_length - 1 = 92: both ends are reachable, nothing beyond.
    assert starts.min().item() == 0
    assert starts.max().item() == n - context_length - 1
    counts = torch.bincount(starts, minlength=n - context_length).double()
    assert len(counts) == n - context_length
    expected = len(starts) / (n - context_length)  # ~215 per start
    # Chi-square with 92 degrees of freedom: mean 92, sd ~13.6; 160 is a 5-sigma bound.
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 160, chi2
    assert abs(starts.double().mean().item() - (n - context_length - 1) / 2) < 1.5


def test_get_batch_is_reproducible_with_a_seed(adapters):
    dataset = np.arange(10_000)
    a = adapters.run_get_batch(dataset, 8, 16, "cpu", generator=torch.Generator().manual_seed(42))
    b = adapters.run_get_batch(dataset, 8, 16, "cpu", generator=torch.Generator().manual_seed(42))
    c = adapters.run_get_batch(dataset, 8, 16, "cpu", generator=torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    torch.manual_seed(5)
    d = adapters.run_get_batch(dataset, 8, 16, "cpu")
    torch.manual_seed(5)
    e = adapters.run_get_batch(dataset, 8, 16, "cpu")
    assert torch.equal(d[0], e[0])


def test_get_batch_from_uint16_memmap(adapters, tmp_path):
    values = (np.arange(5000) * 13 % 65536).astype(np.uint16)  # ids above 32767 must stay positive
    np.save(tmp_path / "tokens.npy", values)
    dataset = np.load(tmp_path / "tokens.npy", mmap_mode="r")
    x, y = adapters.run_get_batch(dataset, 32, 64, "cpu")
    assert x.dtype == torch.int64 and x.min() >= 0 and x.max() < 65536
    for row_x, row_y in zip(x, y):
        start = int(np.nonzero(values == row_x[0].item())[0][0])  # values are distinct
        assert torch.equal(row_x, torch.from_numpy(values[start : start + 64].astype(np.int64)))
        assert torch.equal(row_y, torch.from_numpy(values[start + 1 : start + 65].astype(np.int64)))


def test_get_batch_unusable_device_raises(adapters):
    if torch.cuda.is_available() and torch.cuda.device_count() > 99:
        pytest.skip("this machine has a cuda:99")
    with pytest.raises((RuntimeError, AssertionError, ValueError)):
        adapters.run_get_batch(np.arange(100), 2, 4, "cuda:99")
    with pytest.raises((RuntimeError, ValueError)):
        adapters.run_get_batch(np.arange(100), 2, 4, "not-a-device")


def test_get_batch_dataset_too_short_raises(adapters):
    with pytest.raises(ValueError):
        adapters.run_get_batch(np.arange(8), 2, 8, "cpu")  # needs context_length + 1 = 9 tokens


@pytest.mark.gpu
def test_get_batch_on_cuda(adapters):
    x, y = adapters.run_get_batch(np.arange(1000), 4, 8, "cuda:0")
    assert x.is_cuda and y.is_cuda and torch.equal(y.cpu(), x.cpu() + 1)


# ----------------------------------------------------------------------------- tokenize_to_array

DOCUMENTS = [
    "Hello, world.",
    "Unicode: na\u00efve caf\u00e9, \u65e5\u672c\u8a9e, \U0001f600 emoji.",
    "Line one\nline two\n\n  indented",
    "x" * 300,  # longer than the small chunk size below: a chunk may hold one long document
    "short",
    "The end.",
]


def _write_corpus(path, documents):
    path.write_text(EOS.join(documents), encoding="utf-8")
    return path


def _expected(tokenizer, documents):
    ids = []
    for doc in documents:
        ids.extend(tokenizer.encode(doc))
        ids.append(tokenizer.eos_id)
    return np.asarray(ids)


@pytest.mark.parametrize("num_processes", [1, 2])
def test_tokenize_to_array_matches_per_document_encoding(adapters, tmp_path, num_processes):
    tokenizer = ByteTokenizer()
    text = _write_corpus(tmp_path / "a.txt", DOCUMENTS * 5)
    out = tmp_path / "out" / "tokens.npy"
    array = adapters.run_tokenize_to_array(text, tokenizer, out, num_processes=num_processes, chunk_bytes=64)
    assert array.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(array), _expected(tokenizer, DOCUMENTS * 5))
    # The file is a real .npy that numpy reads, and load_tokens maps it read-only.
    np.testing.assert_array_equal(np.load(out), _expected(tokenizer, DOCUMENTS * 5))
    loaded = adapters.run_load_tokens(out)
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    assert sorted(p.name for p in out.parent.iterdir()) == ["tokens.npy"]  # no temporary files left


def test_tokenize_to_array_several_files_in_order(adapters, tmp_path):
    tokenizer = ByteTokenizer()
    a = _write_corpus(tmp_path / "a.txt", DOCUMENTS[:3])
    b = _write_corpus(tmp_path / "b.txt", DOCUMENTS[3:])
    array = adapters.run_tokenize_to_array(
        [a, b], tokenizer, tmp_path / "t.npy", num_processes=2, chunk_bytes=32
    )
    np.testing.assert_array_equal(np.asarray(array), _expected(tokenizer, DOCUMENTS))
    # Chunking does not change the result.
    whole = adapters.run_tokenize_to_array(
        [a, b], tokenizer, tmp_path / "u.npy", num_processes=1, chunk_bytes=10**9
    )
    np.testing.assert_array_equal(np.asarray(whole), np.asarray(array))


def test_tokenize_to_array_uses_uint32_for_large_vocabularies(adapters, tmp_path):
    tokenizer = ByteTokenizer(offset=65_600, vocab_size=70_000)
    text = _write_corpus(tmp_path / "a.txt", DOCUMENTS)
    array = adapters.run_tokenize_to_array(text, tokenizer, tmp_path / "t.npy", num_processes=1)
    assert array.dtype == np.uint32
    np.testing.assert_array_equal(np.asarray(array), _expected(tokenizer, DOCUMENTS))
    assert array.max() == 69_999


def test_tokenize_to_array_missing_file_raises(adapters, tmp_path):
    with pytest.raises(FileNotFoundError):
        adapters.run_tokenize_to_array(
            tmp_path / "nope.txt", ByteTokenizer(), tmp_path / "t.npy", num_processes=1
        )
    assert not (tmp_path / "t.npy").exists()


def test_load_tokens_rejects_non_token_files(adapters, tmp_path):
    np.save(tmp_path / "matrix.npy", np.zeros((3, 3), dtype=np.uint16))
    with pytest.raises(ValueError):
        adapters.run_load_tokens(tmp_path / "matrix.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError):
        adapters.run_load_tokens(tmp_path / "junk.npy")
    with pytest.raises(FileNotFoundError):
        adapters.run_load_tokens(tmp_path / "missing.npy")


def test_tokenized_corpus_feeds_get_batch(adapters, tmp_path):
    tokenizer = ByteTokenizer()
    text = _write_corpus(tmp_path / "a.txt", DOCUMENTS * 3)
    tokens = adapters.run_tokenize_to_array(text, tokenizer, tmp_path / "t.npy", num_processes=1)
    x, y = adapters.run_get_batch(tokens, 4, 16, "cpu")
    flat = np.asarray(tokens).astype(np.int64)
    for row_x, row_y in zip(x.numpy(), y.numpy()):
        # Each row is a window of the token stream and y is that window moved one token on.
        windows = np.lib.stride_tricks.sliding_window_view(flat, 17)
        assert ((windows[:, :16] == row_x) & (windows[:, 1:] == row_y)).all(axis=1).any()


def test_tokenize_to_array_with_the_bpe_tokenizer_equals_encoding_the_whole_text(adapters, tmp_path):
    # With a real BPE tokenizer that knows <|endoftext|> as a special token, encoding document by
    # document in parallel chunks gives the ids of encoding the whole file at once, plus a final eos.
    vocab = {i: bytes([i]) for i in range(256)}
    merges = [(b"t", b"h"), (b"th", b"e"), (b" ", b"t"), (b"h", b"e"), (b" t", b"he"), (b"i", b"n")]
    for a, b in merges:
        vocab[len(vocab)] = a + b
    tokenizer = adapters.get_tokenizer(vocab, merges, [EOS])
    cafe = "caf\u00e9 "
    documents = [f"the {i}th other thing in there, {cafe * (i % 3)}then" for i in range(40)]
    text = _write_corpus(tmp_path / "a.txt", documents)
    array = adapters.run_tokenize_to_array(
        text, tokenizer, tmp_path / "t.npy", num_processes=2, chunk_bytes=200
    )
    eos_id = tokenizer.encode(EOS)[0]
    expected = tokenizer.encode(text.read_text(encoding="utf-8")) + [eos_id]
    np.testing.assert_array_equal(np.asarray(array), np.asarray(expected))


def test_tokenize_to_array_rejects_invalid_utf8(adapters, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine text<|endoftext|>broken \xff\xfe bytes")
    with pytest.raises(ValueError, match="bad.txt"):
        adapters.run_tokenize_to_array(bad, ByteTokenizer(), tmp_path / "t.npy", num_processes=1)
    assert not (tmp_path / "t.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]  # no temporary files left behind
