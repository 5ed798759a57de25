"""The filtering pipeline: a directory of WARC/WET shards in, deduplicated (tokenized) text out.

Handout section 2 ("Filtering Common Crawl") put together, in the style of datatrove: every
document is kept or dropped by exactly one filter with a reason, and every drop is counted, so

    documents in == documents out + sum of all drops          (checked by ``PipelineReport.balanced``)

Stages, each with its own output folder under ``out_dir``:

1. ``filtered/`` -- one task per input shard, run by ``data.executors`` (local processes or Ray):
   read the records (``data.warc``; damaged regions are drops of the ``read`` filter, pages longer
   than ``max_page_bytes`` are cut and counted), then the filters of ``data.filters`` in batches:
   extract -> language -> gopher -> harmful -> quality -> pii. Each shard's kept documents
   (``<shard>.jsonl``) and its counts (``<shard>.json``) are written atomically. A re-run skips a
   shard whose counts file matches the filter settings *and the input file* (its size and
   modification time): an interrupted run resumes, a replaced input is rebuilt and reported in
   ``PipelineReport.rebuilt``. A shard that raises is reported in ``PipelineReport.failed`` and the
   others carry on.
2. ``text/`` -- corpus-wide deduplication in the driver (``data.corpus_dedup``): exact, then
   MinHash near-duplicates, then repeated lines. One ``<shard>.jsonl`` of ``{"text": ...}`` per shard.
3. ``tokens/`` -- with a ``Tokenization``: one task per shard encodes its documents, each followed
   by the end-of-text id, into a flat little-endian array ``<shard>.bin`` (uint16 when the
   vocabulary fits, else uint32) with a sidecar ``<shard>.bin.json``::

       {"format": "token-shard/1", "dtype": "uint16", "tokens": 51234, "documents": 87,
        "vocab_size": 2048, "eot_id": 2047, "tokenizer": "<fingerprint>", "source": "<digest>", ...}

   ``scripts/train.py --data OUT_DIR/tokens`` trains on these shards directly (``basics.data``
   reads the sidecars and checks the tokenizer fingerprint against the model's tokenizer).

>>> report = run_pipeline(["a.warc.gz", "b.warc.wet.gz"], "out", PipelineConfig())  # doctest: +SKIP
>>> report.documents_in, report.documents_out, report.dropped["language"]          # doctest: +SKIP
(2000, 611, {'language=de': 210, ...})

``data`` imports no other unit: the tokenizer comes in as a ``Tokenization`` (an ``encode``
function, the vocabulary size, the end-of-text id and an opaque fingerprint) built by the caller.
Simplification: stage 2 is recomputed on every run (it is cheap next to stage 1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from data.corpus_dedup import DedupConfig, deduplicate
from data.dedup import write_atomically
from data.executors import ExecutorConfig, run_tasks
from data.filters import Document, FilterConfig, FilterCounts, apply_filters, build_filters, load_models

# Every filter in the order documents meet them (reports list drops in this order).
FILTER_ORDER = ("read", "extract", "language", "gopher", "harmful", "quality", "pii")
FILTER_ORDER += ("exact_dedup", "minhash_dedup", "line_dedup")
WARC_SUFFIXES = (".warc", ".wet", ".warc.gz", ".wet.gz", ".warc.wet", ".warc.wet.gz")
TOKEN_SHARD_FORMAT = "token-shard/1"


@dataclass(frozen=True)
class PipelineConfig(ExecutorConfig, DedupConfig, FilterConfig):
    """Everything a pipeline run needs to know; scripts turn each field into a flag."""

    def __post_init__(self) -> None:
        FilterConfig.__post_init__(self)
        DedupConfig.__post_init__(self)
        ExecutorConfig.__post_init__(self)


class Tokenization(NamedTuple):
    """How stage 3 turns text into ids; the caller builds it from its tokenizer (picklable)."""

    encode: Callable[[str], list[int]]  # text -> ids (no end-of-text added)
    vocab_size: int
    eot_id: int  # appended after every document
    fingerprint: str  # identifies the tokenizer; stored in each shard's sidecar
    files: tuple[str, ...] = ()  # where the tokenizer lives (vocab, merges), for the sidecar

    @classmethod
    def of(cls, tokenizer, eot_id: int, fingerprint: str, files: Sequence[str] = ()) -> Tokenization:
        """From any tokenizer with ``encode(str) -> list[int]`` and ``len()`` = vocabulary size."""
        return cls(tokenizer.encode, len(tokenizer), int(eot_id), fingerprint, tuple(map(str, files)))


# ---- stage 1: one shard -------------------------------------------------------------------------


@dataclass
class ShardResult:
    """Counts of one shard through stage 1 (stored as ``filtered/<shard>.json``)."""

    shard: str
    fingerprint: str  # FilterConfig.fingerprint() of the run that made it
    input: dict[str, int] = field(default_factory=dict)  # size and mtime_ns of the input file
    documents_in: int = 0  # records read plus damaged regions skipped
    bytes_in: int = 0  # payload bytes of the records read
    kept: int = 0
    bytes_kept: int = 0  # UTF-8 bytes of the kept texts
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # filter -> reason -> count
    metrics: dict[str, dict[str, int]] = field(default_factory=dict)  # filter -> what it changed
    seconds: float = 0.0  # wall time
    cpu_seconds: float = 0.0  # CPU time of the task (the honest per-core cost on a shared machine)
    setup_seconds: float = 0.0  # ... of which loading the filters' models
    filter_seconds: dict[str, float] = field(default_factory=dict)  # CPU time per filter
    resumed: bool = False  # this run found the shard already done
    rebuilt: bool = False  # an earlier output existed but its input file has changed since


def shard_name(path: str | os.PathLike) -> str:
    return Path(path).name


def input_signature(path: str | os.PathLike) -> dict[str, int]:
    """What identifies an input file's content cheaply: its size and modification time."""
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _previous_result(counts_path: Path, docs_path: Path, fingerprint: str) -> dict | None:
    if not (counts_path.is_file() and docs_path.is_file()):
        return None
    try:
        previous = json.loads(counts_path.read_text())
    except (OSError, ValueError):
        return None  # unreadable: rebuild
    return previous if previous.get("fingerprint") == fingerprint else None


def _batches(records, size: int):
    batch = []
    for record in records:
        batch.append(
            Document(record.url, record.record_type, record.payload, record.http_header("Content-Type"))
        )
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def filter_shard(input_path: str, out_dir: str, config: FilterConfig) -> ShardResult:
    """Stage 1 for one WARC/WET file; the task every executor runs. Resumes if already done."""
    from data.warc import read_warc

    name, folder = shard_name(input_path), Path(out_dir) / "filtered"
    counts_path, docs_path = folder / f"{name}.json", folder / f"{name}.jsonl"
    result = ShardResult(shard=name, fingerprint=config.fingerprint(), input=input_signature(input_path))
    # Resume: the shard's outputs exist, were made with these filter settings and from this input.
    previous = _previous_result(counts_path, docs_path, result.fingerprint)
    if previous is not None and previous.get("input") == result.input:
        return dataclasses.replace(ShardResult(**previous), resumed=True, rebuilt=False)
    result.rebuilt = previous is not None  # same settings, but the input file changed
    start, cpu_start = time.perf_counter(), time.process_time()
    load_models(config)  # timed apart, so per-filter times measure filtering, not model loading
    result.setup_seconds = time.process_time() - cpu_start
    filters, counts, lines = build_filters(config), FilterCounts(), []
    records, stats = read_warc(input_path, ("response", "conversion"), max_block_bytes=config.max_page_bytes)
    # Batches: model-backed filters (language, harmful, quality) score a batch per call.
    for batch in _batches(records, config.batch_size):
        result.documents_in += len(batch)
        result.bytes_in += sum(len(d.payload) for d in batch)
        for kept in apply_filters(batch, filters, config, counts):
            result.kept += 1
            result.bytes_kept += len(kept.text.encode("utf-8", errors="surrogatepass"))
            lines.append(json.dumps({"url": kept.url, "text": kept.text}, ensure_ascii=False) + "\n")
    if stats.skipped:  # damaged regions are documents we could not read: drops of "read"
        result.documents_in += stats.skipped
        counts.dropped["read"] = Counter(stats.reasons)
    if stats.truncated:
        counts.changed["read"] = Counter({"truncated pages": stats.truncated})
    result.dropped = {k: dict(v) for k, v in counts.dropped.items()}
    result.metrics = {k: dict(v) for k, v in counts.changed.items()}
    result.filter_seconds = dict(counts.cpu_seconds)
    result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    folder.mkdir(parents=True, exist_ok=True)
    # Documents first, counts last: the counts file is what marks the shard done, so a crash between
    # the two writes leaves a shard that is redone, never one that is trusted half-written.
    write_atomically(docs_path, (line.encode("utf-8", errors="surrogatepass") for line in lines))
    write_atomically(counts_path, [json.dumps(dataclasses.asdict(result), indent=1).encode()])
    return result


# ---- stage 3: tokenize one shard ----------------------------------------------------------------


def tokenize_shard(text_path: str, tokens_path: str, tokenization: Tokenization) -> int:
    """Encode the documents of ``text_path`` (JSON lines) into ``tokens_path``, each followed by
    the end-of-text id, plus its sidecar. Skipped when the sidecar says this exact text and
    tokenizer were done. Returns the number of tokens."""
    text_bytes = Path(text_path).read_bytes()
    # The shard's identity: its exact text and the tokenizer; either changing means re-encoding.
    source = hashlib.blake2b(text_bytes + tokenization.fingerprint.encode()).hexdigest()
    sidecar = Path(f"{tokens_path}.json")
    if sidecar.is_file() and Path(tokens_path).is_file():
        previous = json.loads(sidecar.read_text())
        if previous.get("source") == source:
            return int(previous["tokens"])
    # Little-endian uint16 when every id fits (half the bytes), else uint32: the shard format's rule.
    dtype = np.dtype("<u2") if tokenization.vocab_size <= 1 << 16 else np.dtype("<u4")
    ids: list[int] = []
    lines = text_bytes.decode("utf-8", errors="surrogatepass").splitlines()
    for line in lines:
        ids.extend(tokenization.encode(json.loads(line)["text"]))
        ids.append(tokenization.eot_id)
    array = np.asarray(ids, dtype=np.int64)
    if array.size and (array.min() < 0 or array.max() >= tokenization.vocab_size):
        raise ValueError(f"token id {int(array.max())} outside the vocabulary of {tokenization.vocab_size}")
    info = {
        "format": TOKEN_SHARD_FORMAT,
        "dtype": dtype.name,
        "tokens": int(array.size),
        "documents": len(lines),
        "vocab_size": tokenization.vocab_size,
        "eot_id": tokenization.eot_id,
        "tokenizer": tokenization.fingerprint,
        "tokenizer_files": list(tokenization.files),
        "source": source,
    }
    Path(tokens_path).parent.mkdir(parents=True, exist_ok=True)
    # Ids first, sidecar last: a sidecar vouches for a complete .bin (and the skip check reads it).
    write_atomically(Path(tokens_path), [array.astype(dtype).tobytes()])
    write_atomically(sidecar, [json.dumps(info, indent=1).encode()])
    return int(array.size)


# ---- the whole run ------------------------------------------------------------------------------


@dataclass
class PipelineReport:
    """What a run did: per-filter drop counts, documents and bytes in and out, throughput."""

    shards: int = 0
    shards_resumed: int = 0
    rebuilt: list[str] = field(default_factory=list)  # shards redone because their input changed
    failed: dict[str, str] = field(default_factory=dict)  # shard -> error message
    documents_in: int = 0
    documents_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0  # UTF-8 bytes of the final texts
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # filter -> reason -> count
    metrics: dict[str, dict[str, int]] = field(default_factory=dict)  # e.g. pii -> email -> count
    tokens: int = 0
    seconds: float = 0.0  # wall time of the run
    shard_seconds: float = 0.0  # stage-1 CPU time summed over the shards processed in this run (no setup)
    setup_seconds: float = 0.0  # ... CPU time spent loading models, summed over the shards
    filter_seconds: dict[str, float] = field(default_factory=dict)  # ... and per filter
    dedup_seconds: float = 0.0  # wall time of stage 2 (in the driver)
    tokenize_seconds: float = 0.0  # wall time of stage 3
    documents_processed: int = 0  # stage-1 documents of the shards processed (not resumed) in this run
    filter_documents: dict[str, int] = field(default_factory=dict)  # documents each filter looked at

    @property
    def balanced(self) -> bool:
        """Every input document is either kept or dropped by exactly one filter."""
        return self.documents_in == self.documents_out + sum(sum(r.values()) for r in self.dropped.values())

    @property
    def docs_per_second_per_core(self) -> float:
        """Stage-1 documents per CPU second (one core's throughput on the filters)."""
        return self.documents_processed / self.shard_seconds if self.shard_seconds else 0.0


def _merge(into: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> None:
    for name, reasons in counts.items():
        target = into.setdefault(name, {})
        for reason, n in reasons.items():
            target[reason] = target.get(reason, 0) + n


def find_input_files(input_dir: str | os.PathLike) -> list[Path]:
    """The WARC/WET files directly inside ``input_dir`` (by suffix), sorted by name."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"input directory not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(WARC_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no WARC/WET files ({', '.join(WARC_SUFFIXES)}) in {folder}")
    return files


def _check_inputs(input_files: Sequence[str | os.PathLike]) -> list[str]:
    names = [shard_name(p) for p in input_files]
    if len(set(names)) != len(names):
        raise ValueError("two input files share a name; shard outputs are named after their inputs")
    for path in input_files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"input file not found: {path}")
    return names


def _add_shard(report: PipelineReport, result: ShardResult) -> None:
    report.documents_in += result.documents_in
    report.bytes_in += result.bytes_in
    _merge(report.dropped, result.dropped)
    _merge(report.metrics, result.metrics)
    if result.resumed:
        report.shards_resumed += 1
        return
    if result.rebuilt:
        report.rebuilt.append(result.shard)
    report.shard_seconds += result.cpu_seconds - result.setup_seconds
    report.setup_seconds += result.setup_seconds
    report.documents_processed += result.documents_in
    for name, seconds in result.filter_seconds.items():
        report.filter_seconds[name] = report.filter_seconds.get(name, 0.0) + seconds
    # Documents each filter saw: those that reached it, i.e. not dropped by an earlier filter.
    remaining = result.documents_in - sum(result.dropped.get("read", {}).values())
    for name in FILTER_ORDER[1:7]:
        if name in result.filter_seconds:
            report.filter_documents[name] = report.filter_documents.get(name, 0) + remaining
        remaining -= sum(result.dropped.get(name, {}).values())


def _stage1(
    input_files: Sequence[str | os.PathLike],
    out: Path,
    config: PipelineConfig,
    report: PipelineReport,
    progress: bool,
) -> dict[str, list[str]]:
    """Filter every shard; the kept texts per shard that did not fail."""
    names = [shard_name(p) for p in input_files]
    jobs = [(str(p), str(out), config) for p in input_files]
    texts: dict[str, list[str]] = {}
    for index, result, error in run_tasks(filter_shard, jobs, config, progress, desc="filter"):
        if error is not None:
            report.failed[names[index]] = error
            continue
        _add_shard(report, result)
        with open(out / "filtered" / f"{result.shard}.jsonl", encoding="utf-8", errors="surrogatepass") as f:
            texts[result.shard] = [json.loads(line)["text"] for line in f]
    return texts


def _stage2(
    texts: dict[str, list[str]], out: Path, config: PipelineConfig, report: PipelineReport
) -> list[str]:
    """Deduplicate and write ``text/``; the shards written."""
    start = time.perf_counter()
    result = deduplicate(texts, config)
    _merge(report.dropped, {name: dict(reasons) for name, reasons in result.dropped.items()})
    report.metrics.update(result.metrics)
    (out / "text").mkdir(exist_ok=True)
    for shard, kept in result.survivors.items():
        report.documents_out += len(kept)
        encoded = [
            json.dumps({"text": t}, ensure_ascii=False).encode("utf-8", errors="surrogatepass") for t in kept
        ]
        report.bytes_out += sum(len(t.encode("utf-8", errors="surrogatepass")) for t in kept)
        write_atomically(out / "text" / f"{shard}.jsonl", (line + b"\n" for line in encoded))
    for shard in report.failed:  # outputs of an earlier run would now be stale: remove them
        for stale in (f"text/{shard}.jsonl", f"tokens/{shard}.bin", f"tokens/{shard}.bin.json"):
            (out / stale).unlink(missing_ok=True)
    report.dedup_seconds = time.perf_counter() - start
    return list(result.survivors)


def _stage3(
    shards: list[str],
    out: Path,
    tokenization: Tokenization,
    config: PipelineConfig,
    report: PipelineReport,
    progress: bool,
) -> None:
    start = time.perf_counter()
    jobs = [
        (str(out / "text" / f"{s}.jsonl"), str(out / "tokens" / f"{s}.bin"), tokenization) for s in shards
    ]
    for index, tokens, error in run_tasks(tokenize_shard, jobs, config, progress, desc="tokenize"):
        if error is not None:
            report.failed[f"{shards[index]} (tokenize)"] = error
        else:
            report.tokens += tokens
    report.tokenize_seconds = time.perf_counter() - start


def run_pipeline(
    input_files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: PipelineConfig,
    tokenization: Tokenization | None = None,
    progress: bool = False,
) -> PipelineReport:
    """All three stages over ``input_files`` (stage 3 only with a ``tokenization``); see the
    module docstring for the layout of ``out_dir``."""
    start, out = time.perf_counter(), Path(out_dir)
    names = _check_inputs(input_files)
    (out / "filtered").mkdir(parents=True, exist_ok=True)
    report = PipelineReport(shards=len(names))
    texts = _stage1(input_files, out, config, report, progress)
    shards = _stage2(texts, out, config, report)
    if tokenization is not None:
        _stage3(shards, out, tokenization, config, report, progress)
    order = [name for name in FILTER_ORDER if name in report.dropped]
    report.dropped = {name: report.dropped[name] for name in order + sorted(set(report.dropped) - set(order))}
    report.seconds = time.perf_counter() - start
    return report
