"""The filtering pipeline: a directory of WARC/WET shards in, deduplicated (tokenized) text out.

Handout section 2 ("Filtering Common Crawl") put together, in the style of datatrove: a *filter*
is one function ``(Document) -> Document | Drop``; it returns the (maybe rewritten) document to
keep it or ``Drop(reason)`` to drop it, and every drop is counted by filter and reason, so that

    documents in == documents out + sum of all drops          (checked by ``PipelineReport.balanced``)

Stages, each with its own output folder under ``out_dir``:

1. ``filtered/`` -- one task per input shard, run in parallel (local processes, or Ray tasks with
   ``executor="ray"``): read records (malformed ones are drops of the ``read`` filter), then
   extract -> language -> gopher -> harmful -> quality -> pii. Each shard's kept documents
   (``<shard>.jsonl``) and its counts (``<shard>.json``) are written atomically; a re-run skips a
   shard whose counts file exists for the same filter settings, so an interrupted run resumes. A
   shard that raises is reported in ``PipelineReport.failed`` and the others carry on.
2. ``text/`` -- corpus-wide deduplication in the driver: exact duplicate documents (one copy
   survives), then MinHash + LSH near-duplicates (one survivor per cluster), then exact line dedup
   (a non-blank line repeated anywhere in what is left is removed -- boilerplate; a document left
   empty is dropped). One ``<shard>.jsonl`` per shard.
3. ``tokens/`` -- when tokenizer files are given: one task per shard encodes the kept documents
   into a flat uint16 array (``<shard>.bin``), each document followed by ``<|endoftext|>``.

>>> report = run_pipeline(["a.warc.gz", "b.warc.wet.gz"], "out", PipelineConfig())  # doctest: +SKIP
>>> report.documents_in, report.documents_out, report.dropped["language"]          # doctest: +SKIP
(2000, 611, {'language=de': 210, ...})

Simplifications: stage 2 holds the filtered text of the whole run in memory (a crawl-sized run
would shard it the way datatrove's multi-step MinHash does) and is recomputed on every run (it is
cheap next to stage 1); the tokenizer is unit 1's ``basics.tokenizer.Tokenizer``, imported only when
tokenizer files are given.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from data.dedup import remove_repeated_lines, repeated_line_hashes, write_atomically
from data.minhash import find_duplicate_clusters, survivor_priority

ENDOFTEXT = "<|endoftext|>"
# Every filter in the order documents meet them (reports list drops in this order).
FILTER_ORDER = ("read", "extract", "language", "gopher", "harmful", "quality", "pii")
FILTER_ORDER += ("exact_dedup", "minhash_dedup", "line_dedup")
WARC_SUFFIXES = (".warc", ".wet", ".warc.gz", ".wet.gz", ".warc.wet", ".warc.wet.gz")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a pipeline run needs to know; scripts turn each field into a flag."""

    languages: tuple[str, ...] = ("en",)  # keep documents identified as one of these ISO 639-1 codes
    min_language_score: float = 0.5  # ... with at least this fastText score
    language_model: str | None = None  # a lid.176.bin to use instead of the bundled lid.176.ftz
    gopher: bool = True  # apply the Gopher quality rules
    harmful: bool = True  # drop NSFW and toxic documents
    nsfw_threshold: float = 0.5  # drop when P(nsfw) >= this
    toxic_threshold: float = 0.5  # drop when P(toxic) >= this
    nsfw_model: str | None = None  # Dolma's jigsaw nsfw fastText .bin instead of the offline default
    toxic_model: str | None = None  # Dolma's jigsaw hatespeech fastText .bin instead of the offline default
    quality: bool = False  # drop documents the quality classifier calls "cc" (off: the default model is tiny)
    min_quality_score: float = 0.5  # keep "wiki" documents with at least this score
    quality_model: str | None = None  # a trained quality model instead of the shipped default
    mask_pii: bool = True  # replace emails, phone numbers and IPs by placeholders
    exact_dedup: bool = True  # drop exact duplicate documents (one copy survives)
    fuzzy_dedup: bool = True  # MinHash + LSH near-duplicate removal (one per cluster survives)
    line_dedup: bool = True  # then remove non-blank lines repeated anywhere in the corpus
    minhash_num_hashes: int = 128  # MinHash signature length
    minhash_num_bands: int = 16  # LSH bands (num_hashes / num_bands rows each)
    minhash_ngrams: int = 5  # word n-gram shingles
    minhash_threshold: float = 0.8  # verified Jaccard at or above this is a duplicate
    seed: int = 0  # MinHash permutations and survivor choice
    tokenizer_vocab: str | None = None  # GPT-2 style vocab.json; with merges, writes tokens/
    tokenizer_merges: str | None = None  # GPT-2 style merges.txt
    executor: Literal["local", "ray"] = "local"  # local processes, or Ray tasks
    num_workers: int = 2  # local processes (1: run in this process) or Ray CPUs when starting Ray
    ray_address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001"); None starts one

    def filter_fingerprint(self) -> str:
        """Digest of the settings that change stage 1's output (a resumed shard must match it)."""
        stage1 = ("languages", "min_language_score", "language_model", "gopher", "harmful")
        stage1 += ("nsfw_threshold", "toxic_threshold", "nsfw_model", "toxic_model")
        stage1 += ("quality", "min_quality_score", "quality_model", "mask_pii")
        settings = json.dumps({name: getattr(self, name) for name in stage1}, sort_keys=True)
        return hashlib.blake2b(settings.encode(), digest_size=8).hexdigest()


# ---- documents and filters ---------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One record on its way through the filters; ``text`` is filled in by the extract filter."""

    url: str
    record_type: str  # "response" (HTML in payload) or "conversion" (WET text in payload)
    payload: bytes
    content_type: str = ""  # HTTP Content-Type of a response record
    text: str = ""


class Drop(NamedTuple):
    """A filter's verdict to drop a document, with the reason that gets counted."""

    reason: str


class Filter(NamedTuple):
    """A named ``(Document) -> Document | Drop``; ``metrics`` counts what a filter changed."""

    name: str
    apply: Callable[[Document], Document | Drop]
    metrics: Counter | None = None


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip("\"' ")
    return None


def extract(document: Document) -> Document | Drop:
    """WET text is decoded as UTF-8; a WARC response's HTML body is turned into text."""
    from data.extract import extract_text_from_html_bytes

    if document.record_type == "conversion":
        try:
            text = document.payload.decode("utf-8")
        except UnicodeDecodeError:
            return Drop("not utf-8")
    else:
        media_type = document.content_type.split(";")[0].strip().lower()
        if media_type and not ("html" in media_type or media_type.startswith("text/")):
            return Drop("not html")
        text = extract_text_from_html_bytes(document.payload, encoding_hint=_charset(document.content_type))
        if text is None:
            return Drop("binary or undecodable")
    if not text.strip():
        return Drop("empty")
    return replace(document, text=text)


def build_filters(config: PipelineConfig) -> list[Filter]:
    """The per-document filters of stage 1, in order, as ``config`` switches them on."""
    filters = [Filter("extract", extract)]

    from data.language import identify_language

    def language(document: Document) -> Document | Drop:
        label, score = identify_language(document.text, model_path=config.language_model)
        if label not in config.languages:
            return Drop(f"language={label}")
        if score < config.min_language_score:
            return Drop("low language score")
        return document

    filters.append(Filter("language", language))
    if config.gopher:
        from data.gopher import gopher_quality_reason

        def gopher(document: Document) -> Document | Drop:
            reason = gopher_quality_reason(document.text)
            return document if reason is None else Drop(reason)

        filters.append(Filter("gopher", gopher))
    if config.harmful:
        from data.harmful import classify_nsfw, classify_toxic_speech

        def harmful(document: Document) -> Document | Drop:
            label, _ = classify_nsfw(document.text, config.nsfw_threshold, backend=config.nsfw_model)
            if label == "nsfw":
                return Drop("nsfw")
            label, _ = classify_toxic_speech(
                document.text, config.toxic_threshold, backend=config.toxic_model
            )
            return Drop("toxic") if label == "toxic" else document

        filters.append(Filter("harmful", harmful))
    if config.quality:
        from data.quality import classify_quality

        def quality(document: Document) -> Document | Drop:
            label, score = classify_quality(document.text, model=config.quality_model)
            wiki_probability = score if label == "wiki" else 1.0 - score
            return document if wiki_probability >= config.min_quality_score else Drop("low quality")

        filters.append(Filter("quality", quality))
    if config.mask_pii:
        from data.pii import mask_pii

        masked: Counter = Counter()

        def pii(document: Document) -> Document | Drop:
            text, counts = mask_pii(document.text)
            masked.update({kind: n for kind, n in counts.items() if n})
            return replace(document, text=text)

        filters.append(Filter("pii", pii, masked))
    return filters


def apply_filters(
    document: Document, filters: Sequence[Filter], cpu_seconds: dict[str, float] | None = None
) -> tuple[Document | None, str, str]:
    """Run ``document`` through ``filters``: ``(kept document, "", "")`` or ``(None, filter, reason)``.
    With ``cpu_seconds``, each filter's CPU time is added to ``cpu_seconds[filter name]``."""
    for step in filters:
        start = time.process_time()
        verdict = step.apply(document)
        if cpu_seconds is not None:
            cpu_seconds[step.name] = cpu_seconds.get(step.name, 0.0) + time.process_time() - start
        if isinstance(verdict, Drop):
            return None, step.name, verdict.reason
        document = verdict
    return document, "", ""


# ---- stage 1: one shard -------------------------------------------------------------------------


@dataclass
class ShardResult:
    """Counts of one shard through stage 1 (stored as ``filtered/<shard>.json``)."""

    shard: str
    fingerprint: str  # PipelineConfig.filter_fingerprint() of the run that made it
    documents_in: int = 0  # records read plus malformed regions skipped
    bytes_in: int = 0  # payload bytes of the records read
    kept: int = 0
    bytes_kept: int = 0  # UTF-8 bytes of the kept texts
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # filter -> reason -> count
    metrics: dict[str, dict[str, int]] = field(default_factory=dict)  # filter -> what it changed
    seconds: float = 0.0  # wall time
    cpu_seconds: float = 0.0  # CPU time of the task (the honest per-core cost on a shared machine)
    filter_seconds: dict[str, float] = field(default_factory=dict)  # CPU time per filter
    resumed: bool = False  # True when this run found the shard already done


def shard_name(path: str | os.PathLike) -> str:
    return Path(path).name


def filter_shard(input_path: str, out_dir: str, config: PipelineConfig) -> ShardResult:
    """Stage 1 for one WARC/WET file; the task every executor runs. Resumes if already done."""
    from data.warc import read_warc

    name = shard_name(input_path)
    folder = Path(out_dir) / "filtered"
    counts_path, docs_path = folder / f"{name}.json", folder / f"{name}.jsonl"
    fingerprint = config.filter_fingerprint()
    if counts_path.is_file() and docs_path.is_file():
        previous = json.loads(counts_path.read_text())
        if previous.get("fingerprint") == fingerprint:
            return replace(ShardResult(**previous), resumed=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = ShardResult(shard=name, fingerprint=fingerprint)
    filters = build_filters(config)
    dropped: dict[str, Counter] = {}
    lines = []
    records, stats = read_warc(input_path, record_types=("response", "conversion"))
    for record in records:
        result.documents_in += 1
        result.bytes_in += len(record.payload)
        document = Document(
            record.url, record.record_type, record.payload, record.http_headers.get("Content-Type", "")
        )
        kept, filter_name, reason = apply_filters(document, filters, result.filter_seconds)
        if kept is None:
            dropped.setdefault(filter_name, Counter())[reason] += 1
            continue
        result.kept += 1
        result.bytes_kept += len(kept.text.encode("utf-8", errors="surrogatepass"))
        lines.append(json.dumps({"url": kept.url, "text": kept.text}, ensure_ascii=False) + "\n")
    if stats.skipped:  # malformed regions are documents we could not read: count them as drops
        result.documents_in += stats.skipped
        dropped["read"] = Counter(stats.reasons)
    result.dropped = {name: dict(reasons) for name, reasons in dropped.items()}
    result.metrics = {step.name: dict(step.metrics) for step in filters if step.metrics}
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu_start
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(docs_path, (line.encode("utf-8", errors="surrogatepass") for line in lines))
    write_atomically(counts_path, [json.dumps(dataclasses.asdict(result), indent=1).encode()])
    return result


# ---- executors ----------------------------------------------------------------------------------


def run_tasks(
    function: Callable[..., Any],
    jobs: Sequence[tuple],
    config: PipelineConfig,
    progress: bool = False,
    desc: str = "",
) -> Iterator[tuple[int, Any, str | None]]:
    """Run ``function(*job)`` for every job; yield ``(job index, result, None)`` or
    ``(job index, None, error message)`` as tasks finish. Local processes by default, Ray tasks
    with ``config.executor == "ray"``, in this process when ``num_workers <= 1``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="shard", disable=not progress)
    try:
        if config.executor == "ray":
            yield from _run_ray(function, jobs, config, bar)
        elif config.executor != "local":
            raise ValueError(f"unknown executor {config.executor!r}; choose 'local' or 'ray'")
        elif config.num_workers <= 1 or len(jobs) <= 1:
            for index, job in enumerate(jobs):
                try:
                    result = function(*job)
                except Exception as error:  # a bad shard is reported, the others go on
                    yield index, None, f"{type(error).__name__}: {error}"
                else:
                    yield index, result, None
                bar.update()
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(max_workers=min(config.num_workers, len(jobs))) as pool:
                futures = {pool.submit(function, *job): index for index, job in enumerate(jobs)}
                for future in as_completed(futures):
                    error = future.exception()
                    message = None if error is None else f"{type(error).__name__}: {error}"
                    yield futures[future], None if error else future.result(), message
                    bar.update()
    finally:
        bar.close()


def _run_ray(function, jobs, config, bar) -> Iterator[tuple[int, Any, str | None]]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        kwargs = (
            {"num_cpus": config.num_workers}
            if config.ray_address is None
            else {"address": config.ray_address}
        )
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        remote = ray.remote(max_retries=0)(function)
        pending = {remote.remote(*job): index for index, job in enumerate(jobs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                yield index, ray.get(done[0]), None
            except Exception as error:  # RayTaskError wraps the task's exception
                cause = getattr(error, "cause", None) or error
                yield index, None, f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1]}"
            bar.update()
    finally:
        if started_here:
            ray.shutdown()


# ---- stage 3: tokenize one shard ----------------------------------------------------------------


def tokenize_shard(text_path: str, tokens_path: str, vocab_path: str, merges_path: str) -> int:
    """Encode the documents of ``text_path`` (JSON lines) into uint16 ``tokens_path``, each
    document followed by <|endoftext|>. Skipped when a sidecar says this exact text was done."""
    from basics.tokenizer import Tokenizer

    text_bytes = Path(text_path).read_bytes()
    digest = hashlib.blake2b(
        text_bytes + Path(vocab_path).read_bytes() + Path(merges_path).read_bytes()
    ).hexdigest()
    sidecar = Path(f"{tokens_path}.json")
    if sidecar.is_file() and Path(tokens_path).is_file():
        previous = json.loads(sidecar.read_text())
        if previous.get("source") == digest:
            return int(previous["tokens"])
    tokenizer = Tokenizer.from_files(vocab_path, merges_path, special_tokens=[ENDOFTEXT])
    if len(tokenizer) > 1 << 16:
        raise ValueError(f"vocab of {len(tokenizer)} tokens does not fit uint16 (max 65536)")
    eot = tokenizer.special_ids[ENDOFTEXT]
    ids: list[int] = []
    for line in text_bytes.decode("utf-8", errors="surrogatepass").splitlines():
        ids.extend(tokenizer.encode(json.loads(line)["text"]))
        ids.append(eot)
    array = np.asarray(ids, dtype=np.uint16)
    Path(tokens_path).parent.mkdir(parents=True, exist_ok=True)
    write_atomically(Path(tokens_path), [array.tobytes()])
    write_atomically(sidecar, [json.dumps({"source": digest, "tokens": int(array.size)}).encode()])
    return int(array.size)


# ---- the whole run ------------------------------------------------------------------------------


@dataclass
class PipelineReport:
    """What a run did: per-filter drop counts, documents and bytes in and out, throughput."""

    shards: int = 0
    shards_resumed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # shard -> error message
    documents_in: int = 0
    documents_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0  # UTF-8 bytes of the final texts
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)  # filter -> reason -> count
    metrics: dict[str, dict[str, int]] = field(default_factory=dict)  # e.g. pii -> email -> count
    tokens: int = 0
    seconds: float = 0.0  # wall time of the run
    shard_seconds: float = 0.0  # stage-1 CPU time summed over the shards processed in this run
    filter_seconds: dict[str, float] = field(default_factory=dict)  # ... and per filter
    dedup_seconds: float = 0.0  # wall time of stage 2 (in the driver)
    documents_processed: int = 0  # stage-1 documents of the shards processed (not resumed) in this run

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


def deduplicate(
    texts: dict[str, list[str]], config: PipelineConfig, report: PipelineReport
) -> dict[str, list[str]]:
    """Stage 2 over all shards' kept texts; counts go into ``report.dropped``/``report.metrics``.
    Returns the surviving texts per shard, in their original order.

    Order matters: exact duplicates first, then near-duplicates, and only then exact *line* dedup.
    Line dedup first would strip every line two near-duplicate pages share -- and every line of
    an exact duplicate, dropping *both* copies -- before MinHash could pick one survivor.
    """
    keys = [(shard, i) for shard in sorted(texts) for i in range(len(texts[shard]))]
    current = {key: texts[key[0]][key[1]] for key in keys}

    def priority(key: tuple[str, int]) -> bytes:
        return survivor_priority(f"{key[0]}/{key[1]}", config.seed)

    def drop(key: tuple[str, int], name: str, reason: str) -> None:
        del current[key]
        _merge(report.dropped, {name: {reason: 1}})

    if config.exact_dedup:
        groups: dict[bytes, list[tuple[str, int]]] = {}
        for key, text in current.items():
            digest = hashlib.blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=16).digest()
            groups.setdefault(digest, []).append(key)
        for members in groups.values():
            survivor = min(members, key=priority)
            for key in members:
                if key != survivor:
                    drop(key, "exact_dedup", "exact duplicate")
    if config.fuzzy_dedup and current:
        live = list(current)
        clusters, candidates, verified = find_duplicate_clusters(
            [current[k] for k in live],
            config.minhash_num_hashes,
            config.minhash_num_bands,
            config.minhash_ngrams,
            config.minhash_threshold,
            config.seed,
        )
        for members in clusters:
            survivor = min((live[m] for m in members), key=priority)
            for m in members:
                if live[m] != survivor:
                    drop(live[m], "minhash_dedup", "near duplicate")
        report.metrics["minhash_dedup"] = {"candidate pairs": candidates, "verified pairs": verified}
    if config.line_dedup and current:
        repeated = repeated_line_hashes(current.values())
        removed_lines = 0
        for key in list(current):
            text, removed = remove_repeated_lines(current[key], repeated)
            removed_lines += removed
            if text.strip():
                current[key] = text
            else:
                drop(key, "line_dedup", "all lines repeated")
        report.metrics["line_dedup"] = {"lines removed": removed_lines}
    return {
        shard: [current[(shard, i)] for i in range(len(texts[shard])) if (shard, i) in current]
        for shard in texts
    }


def run_pipeline(
    input_files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: PipelineConfig,
    progress: bool = False,
) -> PipelineReport:
    """All three stages over ``input_files``; see the module docstring for the layout of ``out_dir``."""
    start = time.perf_counter()
    out = Path(out_dir)
    names = [shard_name(p) for p in input_files]
    if len(set(names)) != len(names):
        raise ValueError("two input files share a name; shard outputs are named after their inputs")
    for path in input_files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"input file not found: {path}")
    if (config.tokenizer_vocab is None) != (config.tokenizer_merges is None):
        raise ValueError("give both tokenizer_vocab and tokenizer_merges, or neither")
    (out / "filtered").mkdir(parents=True, exist_ok=True)
    report = PipelineReport(shards=len(names))

    # Stage 1: per-document filters, one task per shard.
    jobs = [(str(p), str(out), config) for p in input_files]
    texts: dict[str, list[str]] = {}
    for index, result, error in run_tasks(filter_shard, jobs, config, progress, desc="filter"):
        if error is not None:
            report.failed[names[index]] = error
            continue
        report.documents_in += result.documents_in
        report.bytes_in += result.bytes_in
        _merge(report.dropped, result.dropped)
        _merge(report.metrics, result.metrics)
        if result.resumed:
            report.shards_resumed += 1
        else:
            report.shard_seconds += result.cpu_seconds
            for name, seconds in result.filter_seconds.items():
                report.filter_seconds[name] = report.filter_seconds.get(name, 0.0) + seconds
            report.documents_processed += result.documents_in
        with open(out / "filtered" / f"{result.shard}.jsonl", encoding="utf-8", errors="surrogatepass") as f:
            texts[result.shard] = [json.loads(line)["text"] for line in f]

    # Stage 2: corpus-wide dedup, then the final text shards.
    dedup_start = time.perf_counter()
    survivors = deduplicate(texts, config, report)
    report.dedup_seconds = time.perf_counter() - dedup_start
    (out / "text").mkdir(exist_ok=True)
    for shard, kept in survivors.items():
        report.documents_out += len(kept)
        encoded = [
            json.dumps({"text": t}, ensure_ascii=False).encode("utf-8", errors="surrogatepass") + b"\n"
            for t in kept
        ]
        report.bytes_out += sum(len(t.encode("utf-8", errors="surrogatepass")) for t in kept)
        write_atomically(out / "text" / f"{shard}.jsonl", encoded)
    for shard in report.failed:  # outputs of an earlier run would now be stale: remove them
        for stale in (
            out / "text" / f"{shard}.jsonl",
            out / "tokens" / f"{shard}.bin",
            out / "tokens" / f"{shard}.bin.json",
        ):
            stale.unlink(missing_ok=True)

    # Stage 3: tokens, one task per shard.
    if config.tokenizer_vocab is not None:
        jobs = [
            (
                str(out / "text" / f"{s}.jsonl"),
                str(out / "tokens" / f"{s}.bin"),
                config.tokenizer_vocab,
                config.tokenizer_merges,
            )
            for s in survivors
        ]
        shards = list(survivors)
        for index, tokens, error in run_tasks(tokenize_shard, jobs, config, progress, desc="tokenize"):
            if error is not None:
                report.failed[f"{shards[index]} (tokenize)"] = error
            else:
                report.tokens += tokens
    order = [name for name in FILTER_ORDER if name in report.dropped]
    report.dropped = {name: report.dropped[name] for name in order + sorted(set(report.dropped) - set(order))}
    report.seconds = time.perf_counter() - start
    return report
