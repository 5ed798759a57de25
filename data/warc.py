"""Read the records of Common Crawl WARC (``response``) and WET (``conversion``) files with fastwarc.

A WARC file is a sequence of records, each ``WARC/1.0`` header lines, a blank line, then a block
of exactly ``Content-Length`` bytes. In a WARC ``response`` record the block is the raw HTTP
response; in a WET ``conversion`` record it is the page's extracted UTF-8 text. ``.gz`` files
compress each record as its own gzip member. fastwarc (C++) parses all of this; this module adds
what a pipeline over millions of crawled pages needs on top:

* one small frozen ``WarcRecord`` per record (URL, type, headers, payload bytes, id), detached
  from fastwarc's reusable buffers so it can be pickled to worker processes;
* malformed and truncated records are **skipped and counted, never raised**:

  - a record whose payload is shorter than its ``Content-Length`` (a truncated download), whose
    ``Content-Length`` is missing or not a number, or a ``response`` whose block is not HTTP, is
    dropped and counted in ``stats.skipped``;
  - when fastwarc cannot parse a header at all (garbage bytes, a ``WORC/9.9`` version line, ...)
    we *resynchronise*: scan forward from the start of the last record we saw for the next line
    that begins with ``WARC/1.`` and restart fastwarc there. Records swallowed by an oversized
    ``Content-Length`` are recovered the same way.

  ``stats.skipped`` counts *bad regions*: a run of adjacent broken records between two good
  ones counts once. ``stats.resyncs`` says how often we had to restart.

Usage::

    records, stats = read_warc("CC-MAIN-...-00000.warc.gz")
    for record in records:          # WarcRecord(url=..., record_type="response", payload=b"<html>...")
        ...
    print(stats.read, stats.skipped)

or ``for record in iter_warc_records(path): ...`` when the counts are not needed.

Simplifications: a resynchronisation re-opens the file and decompresses it from the start up to
the restart point (gzip cannot seek backwards), which is fine for the rare broken record in a
crawl file but quadratic for a file that is broken everywhere. An oversized ``Content-Length`` in
the *middle* of a file (not at its end) is only noticed when the following header fails to parse,
so that one record is returned with bytes of its neighbour glued on; checking the
``WARC-Block-Digest`` would catch it, at the cost of hashing every record. A gzip member whose
compressed bytes are corrupt (not merely cut short) ends the file: everything after it is counted
as one skipped region.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastwarc.stream_io import GzipReader
from fastwarc.warc import ArchiveIterator, WarcRecordType

RECORD_TYPES = {
    "warcinfo": WarcRecordType.warcinfo,
    "response": WarcRecordType.response,
    "resource": WarcRecordType.resource,
    "request": WarcRecordType.request,
    "metadata": WarcRecordType.metadata,
    "revisit": WarcRecordType.revisit,
    "conversion": WarcRecordType.conversion,
    "continuation": WarcRecordType.continuation,
}
_HEADER_START = b"\nWARC/1."  # a record header starts on a new line with the version
_CHUNK = 1 << 16


@dataclass(frozen=True)
class WarcRecord:
    """One record: for ``response`` the payload is the HTTP *body*; for ``conversion`` the text."""

    url: str  # WARC-Target-URI ("" when the record has none, e.g. warcinfo)
    record_type: str  # "response", "conversion", ... (the WARC-Type header)
    headers: dict[str, str]  # the WARC header lines
    payload: bytes  # HTTP body (response records) or the whole block (all other types)
    record_id: str  # WARC-Record-ID, e.g. "<urn:uuid:...>"
    http_headers: dict[str, str] = field(default_factory=dict)  # response records only
    offset: int = 0  # byte offset of the record in the (decompressed) file


@dataclass
class WarcStats:
    """Counts for one pass over a file; filled in while the iterator runs."""

    read: int = 0  # good records returned
    skipped: int = 0  # bad regions skipped (malformed or truncated records, garbage bytes)
    resyncs: int = 0  # times the reader restarted at the next "WARC/1." line
    reasons: dict[str, int] = field(default_factory=dict)  # skipped regions by reason


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


class _Stream:
    """Decompressed bytes of ``path`` from ``start`` on, as the file-like object fastwarc reads.

    fastwarc then reports ``stream_pos`` relative to ``start``; we add it back to get the
    offset in the whole decompressed file, which is what resynchronisation needs.
    """

    def __init__(self, path: Path, start: int, gzip: bool):
        self.inner = GzipReader(str(path)) if gzip else open(path, "rb")  # noqa: SIM115
        if start:
            self.inner.seek(start)  # forward only: GzipReader decompresses and discards
        self.position = 0  # bytes handed out so far, relative to start

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.position += len(data)
        return data

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self.inner.close()


def _next_header(path: Path, after: int, gzip: bool) -> int | None:
    """Offset of the first line starting with ``WARC/1.`` strictly after byte ``after``."""
    stream = _Stream(path, after, gzip)
    try:
        position, tail = after, b""
        while chunk := stream.read(_CHUNK):
            window = tail + chunk
            index = window.find(_HEADER_START)
            if index >= 0:
                return position - len(tail) + index + 1
            tail = window[-len(_HEADER_START) :]
            position += len(chunk)
        return None
    except OSError:  # corrupt gzip data: nothing readable after this point
        return None
    finally:
        stream.close()


def _problem(record, payload: bytes) -> str | None:
    """Why a parsed record is unusable, or None when it is fine."""
    declared = record.headers.get("Content-Length")
    if declared is None or not declared.strip().isdigit():
        return "bad content-length"
    if len(payload) < record.content_length:
        return "truncated"
    if record.record_type == WarcRecordType.response:
        if not record.is_http_parsed or record.http_headers.status_code is None:
            return "not http"  # no application/http block, or no "HTTP/1.x 200 OK" status line
    return None


def _type_mask(record_types: Iterable[str]) -> WarcRecordType:
    mask = WarcRecordType.no_type
    for name in record_types:
        if name not in RECORD_TYPES:
            raise ValueError(f"unknown WARC record type {name!r}; choose from {', '.join(RECORD_TYPES)}")
        mask |= RECORD_TYPES[name]
    return mask


def _iter(path: Path, mask: WarcRecordType, stats: WarcStats) -> Iterator[WarcRecord]:
    gzip = _is_gzip(path)
    start: int | None = 0
    in_bad_region = False  # count one skip per run of broken bytes between good records

    def skip(reason: str) -> None:
        nonlocal in_bad_region
        if not in_bad_region:
            stats.skipped += 1
            stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
        in_bad_region = True

    while start is not None:
        last_start = start  # where the last record fastwarc handed us began
        stream = _Stream(path, start, gzip)
        try:
            for raw in ArchiveIterator(stream, record_types=mask, stream_detect=False, parse_http=False):
                last_start = start + raw.stream_pos
                if raw.record_type == WarcRecordType.response and raw.is_http:
                    raw.parse_http()  # split off the HTTP headers: the payload is the body
                payload = raw.reader.read()
                reason = _problem(raw, payload)
                if reason is not None:
                    skip(reason)
                    break  # restart after this record: it may have swallowed good ones
                in_bad_region = False
                stats.read += 1
                yield WarcRecord(
                    url=raw.headers.get("WARC-Target-URI") or "",
                    record_type=str(raw.record_type),
                    headers=dict(raw.headers.items()),
                    payload=payload,
                    record_id=raw.record_id or "",
                    http_headers=dict(raw.http_headers.items()) if raw.http_headers is not None else {},
                    offset=last_start,
                )
            else:
                return  # fastwarc reached the end cleanly
        except (OSError, EOFError, ValueError):
            skip("unparseable")
        finally:
            stream.close()
        start = _next_header(path, last_start, gzip)
        if start is not None:
            stats.resyncs += 1


def read_warc(
    path: str | Path, record_types: Iterable[str] = ("response", "conversion")
) -> tuple[Iterator[WarcRecord], WarcStats]:
    """``(records, stats)`` for a WARC/WET file, gzip or not; ``stats`` fills in as you iterate.

    Only records whose WARC-Type is in ``record_types`` are returned; bad ones are skipped and
    counted in ``stats`` (see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WARC file not found: {path}")
    stats = WarcStats()
    return _iter(path, _type_mask(record_types), stats), stats


def iter_warc_records(
    path: str | Path, record_types: Iterable[str] = ("response", "conversion")
) -> Iterator[WarcRecord]:
    """The good records of ``path`` whose type is in ``record_types`` (see ``read_warc``)."""
    records, _ = read_warc(path, record_types)
    return records
