"""Token data for training: tokenize a corpus into a flat array on disk, and sample batches from it.

Course handout (CS336 assignment 1), sections "Data loading" and "Experiments" (tokenize the training
data once into a uint16 NumPy array, then memory-map it so a dataset larger than RAM costs nothing to
open).

A language-modelling dataset is one long 1-D array of token ids, documents separated by the
``<|endoftext|>`` id. A batch is ``batch_size`` windows of ``context_length + 1`` tokens starting at
uniformly random positions; the inputs are the first ``context_length`` tokens of each window and the
targets the last ``context_length`` (the same window shifted by one)::

    dataset = [5, 6, 7, 8, 9],  context_length = 3,  start = 1   ->   x = [6, 7, 8],  y = [7, 8, 9]

Tokenization streams: each text file is cut into chunks of about ``chunk_bytes`` at document boundaries
(the byte offset where an ``<|endoftext|>`` starts), the chunks are encoded in parallel worker
processes, and the ids are appended in file order to a temporary file, which becomes the ``.npy``
atomically at the end. Memory use is a few chunks, not the corpus.

Simplification: each document is encoded on its own and followed by the end-of-text id, so the output
is ``doc1 <eos> doc2 <eos> ... docN <eos>`` whatever separators the files had (empty documents, as
between two adjacent separators, yield nothing).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from jaxtyping import Int
from torch import Tensor

from basics.device import check_device
from basics.files import atomic_path
from basics.pretokenization import ENDOFTEXT, find_chunk_boundaries
from basics.tokenizer import eos_token_id

__all__ = ["get_batch", "tokenize_to_array", "load_tokens", "split_token_shards"]

DEFAULT_CHUNK_BYTES = 1 << 20  # 1 MiB of text per task: big enough to amortise IPC, small in memory
_COPY_BLOCK = 1 << 24  # tokens per block when moving ids from the temporary file into the .npy


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def get_batch(
    dataset: npt.NDArray[np.integer] | Sequence[int],
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch seq"]]:
    """Sample ``batch_size`` windows from ``dataset``: inputs ``x`` and next-token targets ``y``.

    Start positions are uniform over ``[0, len(dataset) - context_length - 1]`` (every start whose
    window of ``context_length + 1`` tokens fits), drawn from ``generator`` or torch's global RNG, so a
    seeded run is reproducible. Both tensors are int64 on ``device``.

    >>> x, y = get_batch(np.arange(10), 2, 4, "cpu", generator=torch.Generator().manual_seed(0))
    >>> bool((y == x + 1).all()), tuple(x.shape)
    (True, (2, 4))
    """
    dev = check_device(device)
    # A memmap is already an ndarray: asarray would be a no-op for it, but a list must be converted.
    dataset = np.asarray(dataset) if not isinstance(dataset, np.ndarray) else dataset
    if dataset.ndim != 1:
        raise ValueError(f"get_batch: dataset must be 1-D, got shape {dataset.shape}")
    if batch_size <= 0 or context_length <= 0:
        raise ValueError(
            f"get_batch: batch_size and context_length must be positive, got {batch_size}, {context_length}"
        )
    if len(dataset) < context_length + 1:
        raise ValueError(
            f"get_batch: dataset has {len(dataset)} tokens, need at least context_length + 1 = {context_length + 1}"
        )
    # A window needs context_length + 1 tokens (inputs plus the one-later targets), so the last
    # valid start is len - context_length - 1: num_starts = len - context_length choices.
    num_starts = len(dataset) - context_length
    starts = torch.randint(0, num_starts, (batch_size,), generator=generator).numpy()  # (batch,)
    index = starts[:, None] + np.arange(context_length + 1)[None, :]  # (batch, seq + 1)
    # Fancy indexing reads only these windows from a memmap (not the whole file), then one cast to
    # int64, the dtype embedding lookups and cross_entropy's targets want.
    windows = torch.from_numpy(dataset[index].astype(np.int64))  # (batch, seq + 1), contiguous
    if dev.type == "cuda":
        # Copy the contiguous windows through pinned (page-locked) host memory: only such a copy can
        # run asynchronously (non_blocking) while the GPU still works on the previous step. Pinning
        # the x and y slices instead would pin two strided views, i.e. two extra host copies.
        windows = windows.pin_memory().to(dev, non_blocking=True)
    else:
        windows = windows.to(dev)
    # x is each window without its last token, y without its first: y[b, t] is the token after x[b, t].
    return windows[:, :-1], windows[:, 1:]  # (batch, seq) each, views of one tensor


# ---------------------------------------------------------------------------------------------
# Tokenizing a corpus to disk
# ---------------------------------------------------------------------------------------------


def chunk_boundaries(
    path: str | os.PathLike, chunk_bytes: int, separator: bytes, special_tokens=()
) -> list[int]:
    """Byte offsets ``[0, ..., size]`` cutting ``path`` into chunks of about ``chunk_bytes``, each
    inner cut where a ``separator`` starts (so no document is split); the tokenizer's own chunker
    (:func:`basics.pretokenization.find_chunk_boundaries`) does the scanning."""
    num_chunks = max(1, math.ceil(os.path.getsize(path) / max(1, chunk_bytes)))
    return find_chunk_boundaries(path, num_chunks, separator, special_tokens)


# Each worker gets the tokenizer once (pickled by the pool initializer), not once per chunk.
_worker_state: dict[str, Any] = {}


def _init_worker(tokenizer: Any, eos: str, eos_id: int, dtype: np.dtype) -> None:
    _worker_state.update(tokenizer=tokenizer, eos=eos, eos_id=eos_id, dtype=dtype)


def _encode_chunk(task: tuple[str, int, int]) -> tuple[np.ndarray, int]:
    """Encode bytes ``[start, end)`` of a file: each document's ids, then the end-of-text id."""
    path, start, end = task
    tokenizer, eos, eos_id = _worker_state["tokenizer"], _worker_state["eos"], _worker_state["eos_id"]
    dtype = _worker_state["dtype"]
    # Read only this chunk's bytes: a worker never holds more than chunk_bytes of text.
    with open(path, "rb") as f:
        f.seek(start)
        raw = f.read(end - start)
    try:  # chunk edges sit where a separator starts, so a valid file never fails here mid-character
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 at byte {start + error.start}") from None
    ids: list[int] = []
    # "a<eos>b<eos>" splits to ["a", "b", ""]: each non-empty document is encoded alone and closed
    # with the end-of-text id, so the output is the same wherever the chunk edges fall.
    for document in text.split(eos):
        if document:
            ids.extend(tokenizer.encode(document))
            ids.append(eos_id)
    array = np.asarray(ids, dtype=np.int64)
    # Check before narrowing: astype(uint16) would wrap an id >= 65,536 silently.
    if array.size and (array.min() < 0 or array.max() > np.iinfo(dtype).max):
        raise ValueError(f"{path}: token id {array.max()} does not fit in {np.dtype(dtype).name}")
    return array.astype(dtype), end - start


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65,536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def tokenize_to_array(
    text_paths: str | os.PathLike | Sequence[str | os.PathLike],
    tokenizer: Any,
    out_path: str | os.PathLike,
    *,
    num_processes: int | None = None,
    progress: bool = False,
    eos: str = ENDOFTEXT,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.memmap:
    """Tokenize text files (documents separated by ``eos``) into a flat ``.npy`` array at ``out_path``.

    ``tokenizer`` needs ``encode(str) -> list[int]``, a ``vocab`` (its length is the vocabulary size)
    and a single id for ``eos``; it must be picklable when ``num_processes > 1`` (default: all CPUs,
    at most one per chunk). The array is uint16, or uint32 when the vocabulary exceeds 65,536 ids.
    Returns the result memory-mapped read-only (see :func:`load_tokens`).
    """
    paths = [Path(text_paths)] if isinstance(text_paths, str | os.PathLike) else [Path(p) for p in text_paths]
    if not paths:
        raise ValueError("tokenize_to_array: no text files given")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"tokenize_to_array: no such text file: {path}")
    vocab = getattr(tokenizer, "vocab", None)
    if vocab is None:
        raise ValueError("tokenize_to_array: tokenizer has no .vocab to size the token dtype")
    dtype = token_dtype(len(vocab))  # uint16 halves the file (and the memmap reads) when ids fit
    eos_id = eos_token_id(tokenizer, eos)
    separator = eos.encode("utf-8")
    # One task per (file, byte range); ranges end where a separator starts, so no document (and no
    # multi-byte character) is ever cut in two and each chunk encodes exactly as the whole file would.
    tasks = [
        (str(path), start, end)
        for path in paths
        for start, end in _pairs(
            chunk_boundaries(path, chunk_bytes, separator, getattr(tokenizer, "special_tokens", ()) or ())
        )
    ]
    num_processes = min(num_processes or os.cpu_count() or 1, max(len(tasks), 1))  # no idle workers

    # Ids stream into a raw temporary file beside the output (same filesystem, so the final rename
    # is atomic): memory holds a few chunks, never the corpus. An interrupted run leaves no .npy.
    with atomic_path(out_path, suffix=".npy") as npy_path:
        raw_path = npy_path.with_suffix(".raw")
        try:
            total = 0
            with open(raw_path, "wb") as raw, _progress_bar(progress, sum(e - s for _, s, e in tasks)) as bar:
                # Chunks arrive in task order (imap, not imap_unordered), so the ids keep file order.
                for ids, nbytes in _run_tasks(tasks, num_processes, (tokenizer, eos, eos_id, dtype)):
                    raw.write(ids.tobytes())
                    total += len(ids)
                    bar.update(nbytes)
            _raw_to_npy(raw_path, npy_path, dtype, total)
        finally:
            raw_path.unlink(missing_ok=True)
    return load_tokens(out_path)


def _raw_to_npy(raw_name: str | Path, npy_name: str | Path, dtype: np.dtype, total: int) -> None:
    """The .npy header needs the length, known only at the end: copy the raw ids behind a header, in
    blocks so a corpus larger than RAM never has to fit in it."""
    source = np.memmap(raw_name, dtype=dtype, mode="r", shape=(total,)) if total else np.zeros(0, dtype)
    array = np.lib.format.open_memmap(npy_name, mode="w+", dtype=dtype, shape=(total,))
    # Block copies: each moves _COPY_BLOCK ids (32 MiB of uint16) through memory at most.
    for i in range(0, total, _COPY_BLOCK):
        array[i : i + _COPY_BLOCK] = source[i : i + _COPY_BLOCK]
    array.flush()
    del array, source  # close both maps before the caller renames (required on Windows)


def _pairs(boundaries: list[int]) -> Iterator[tuple[int, int]]:
    # [0, 10, 10, 25] -> (0, 10), (10, 25): consecutive cuts, empty ranges skipped.
    yield from ((s, e) for s, e in zip(boundaries[:-1], boundaries[1:]) if e > s)


def _run_tasks(
    tasks: list[tuple[str, int, int]], num_processes: int, init_args: tuple
) -> Iterator[tuple[np.ndarray, int]]:
    """Encoded chunks in task order: in this process, or from a pool of ``num_processes`` workers."""
    if num_processes <= 1:
        # Same functions without a pool: no pickling, and a traceback points into _encode_chunk.
        _init_worker(*init_args)
        try:
            yield from map(_encode_chunk, tasks)
        finally:
            _worker_state.clear()
        return
    with multiprocessing.get_context().Pool(
        num_processes, initializer=_init_worker, initargs=init_args
    ) as pool:
        yield from pool.imap(_encode_chunk, tasks)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _progress_bar(enabled: bool, total_bytes: int) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenize")


def load_tokens(path: str | os.PathLike) -> np.memmap:
    """Open a token array written by :func:`tokenize_to_array` (or ``np.save``) read-only, memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_tokens: no such token file: {path}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"load_tokens: {path} is not a .npy token array ({error})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"load_tokens: {path} must hold a 1-D integer array, got {getattr(array, 'shape', '?')}"
        )
    return array


# ---------------------------------------------------------------------------------------------
# Token shards written by the data pipeline (unit 4)
# ---------------------------------------------------------------------------------------------
# ``data.pipeline`` writes ``tokens/<shard>.bin`` (little-endian ids, each document followed by the
# end-of-text id) with a sidecar ``<shard>.bin.json`` naming the dtype, the token count, the
# vocabulary size, the end-of-text id and the tokenizer's fingerprint. ``data`` does not import
# ``basics`` (nor the reverse), so the format is the contract: this section reads it.

TOKEN_SHARD_FORMAT = "token-shard/1"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short digest of a tokenizer's vocabulary (id -> bytes), merges and special tokens: two
    tokenizers with the same fingerprint turn text into the same ids."""
    digest = hashlib.sha256()
    for token_id in sorted(tokenizer.vocab):
        token = tokenizer.vocab[token_id]
        digest.update(b"%d:%d:" % (token_id, len(token)) + token)
    for left, right in getattr(tokenizer, "merges", []):
        digest.update(b"m%d:%d:" % (len(left), len(right)) + left + right)
    for special in getattr(tokenizer, "special_tokens", []) or []:
        digest.update(b"s" + special.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TokenShards:
    """A folder of token shards, split into one training and one validation array."""

    train: Path  # .npy of every shard's first (1 - validation_fraction) documents
    val: Path  # .npy of the rest: each shard's last documents
    vocab_size: int  # of the tokenizer that wrote the shards
    eot_id: int
    tokenizer: str  # its fingerprint
    tokenizer_files: tuple[str, ...]  # where it lived when the shards were written (may be empty)


def read_shard_sidecars(folder: str | os.PathLike) -> list[tuple[Path, dict]]:
    """``(shard, sidecar)`` of every ``*.bin`` in ``folder``, checked against each other and their size."""
    folder = Path(folder)
    shards = sorted(folder.glob("*.bin"))
    if not shards:
        raise FileNotFoundError(f"no token shards (*.bin) in {folder}")
    result = []
    for shard in shards:
        sidecar = Path(f"{shard}.json")
        if not sidecar.is_file():
            raise FileNotFoundError(
                f"{shard}: sidecar {sidecar.name} missing (not written by the data pipeline?)"
            )
        try:
            info = json.loads(sidecar.read_text())
        except ValueError as error:
            raise ValueError(f"{sidecar}: not JSON ({error})") from None
        if not isinstance(info, dict) or info.get("format") != TOKEN_SHARD_FORMAT:
            raise ValueError(f"{sidecar}: not a {TOKEN_SHARD_FORMAT} sidecar")
        itemsize = np.dtype(info["dtype"]).itemsize
        if shard.stat().st_size != int(info["tokens"]) * itemsize:
            raise ValueError(f"{shard}: {shard.stat().st_size} bytes, sidecar says {info['tokens']} tokens")
        first = result[0][1] if result else info
        for key in ("tokenizer", "vocab_size", "eot_id"):
            if info[key] != first[key]:
                raise ValueError(
                    f"{shard}: {key} {info[key]!r} differs from {result[0][0].name}'s {first[key]!r}"
                )
        result.append((shard, info))
    return result


def split_token_shards(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    validation_fraction: float = 0.05,
    tokenizer: Any | None = None,
) -> TokenShards:
    """Turn the pipeline's shards into ``train.npy`` and ``val.npy`` under ``out_dir``: from each
    shard the last ``validation_fraction`` of its tokens, cut at a document boundary, is held
    out. With ``tokenizer``, its fingerprint must match the one that wrote the shards. The arrays
    are cached under a key of the shards' contents and the fraction (a changed shard is redone)."""
    if not isinstance(validation_fraction, int | float) or not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    shards = read_shard_sidecars(folder)
    info = shards[0][1]
    if tokenizer is not None and tokenizer_fingerprint(tokenizer) != info["tokenizer"]:
        raise ValueError(
            f"{folder} was tokenized by tokenizer {info['tokenizer']}, not by the model's "
            f"({tokenizer_fingerprint(tokenizer)}); pass the tokenizer that wrote it"
        )
    # The cache key: shard names, their sources and the fraction; a re-run pipeline changes it.
    key = hashlib.sha256(
        json.dumps([[s.name, i["source"]] for s, i in shards] + [validation_fraction]).encode()
    ).hexdigest()[:16]
    target = Path(out_dir) / key
    train_path, val_path = target / "train.npy", target / "val.npy"
    if not (train_path.is_file() and val_path.is_file()):
        target.mkdir(parents=True, exist_ok=True)
        _write_split(shards, train_path, val_path, validation_fraction)
    files = tuple(info.get("tokenizer_files") or ())
    return TokenShards(
        train_path, val_path, int(info["vocab_size"]), int(info["eot_id"]), info["tokenizer"], files
    )


def _write_split(shards: list[tuple[Path, dict]], train_path: Path, val_path: Path, fraction: float) -> None:
    """Each shard's documents that start after token (1 - fraction) * n go to validation, the rest
    to training (a shard keeps at least one training document; if that leaves no validation at
    all, the last document of the biggest shard is held out). Written atomically, block by block."""
    arrays, ends_of, cuts = [], [], []
    for shard, info in shards:
        dtype = np.dtype(info["dtype"]).newbyteorder("<")  # the shard format fixes little-endian
        ids = np.memmap(shard, dtype=dtype, mode="r") if info["tokens"] else np.zeros(0, dtype)
        ends = np.flatnonzero(ids == info["eot_id"]) + 1  # (documents,) one past each document
        # The last document end at or before token (1 - fraction) * n: training keeps up to there.
        at = int(np.searchsorted(ends, int(len(ids) * (1 - fraction)), side="right")) - 1
        arrays.append(ids)
        ends_of.append(ends)
        # max(at, 0): at least one training document; a one-document shard goes to training whole.
        cuts.append(int(ends[max(at, 0)]) if ends.size > 1 else len(ids))
    # Small shards can all round to "no validation": then hold out the biggest shard's last document.
    if all(cut == len(ids) for cut, ids in zip(cuts, arrays)):
        biggest = max(range(len(arrays)), key=lambda i: (len(ends_of[i]), len(arrays[i])))
        if len(ends_of[biggest]) > 1:
            cuts[biggest] = int(ends_of[biggest][-2])
    dtype = token_dtype(int(shards[0][1]["vocab_size"]))
    for path, parts in (
        (train_path, [a[:c] for a, c in zip(arrays, cuts)]),
        (val_path, [a[c:] for a, c in zip(arrays, cuts)]),
    ):
        total = sum(len(p) for p in parts)
        with atomic_path(path, suffix=".npy") as temporary:
            out = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=(total,))
            position = 0
            for part in parts:
                for i in range(0, len(part), _COPY_BLOCK):
                    block = part[i : i + _COPY_BLOCK]
                    out[position : position + len(block)] = block
                    position += len(block)
            out.flush()
            del out  # close the map before the rename (required on Windows)
