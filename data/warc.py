"""Read the records of Common Crawl WARC (``response``) and WET (``conversion``) files, damaged or not.

A WARC file is a sequence of records, each ``WARC/1.0`` header lines, a blank line, then a block
of exactly ``Content-Length`` bytes, then ``\\r\\n\\r\\n``::

    WARC/1.0\\r\\n
    WARC-Type: response\\r\\n
    WARC-Target-URI: http://example.com/\\r\\n
    Content-Length: 1234\\r\\n
    \\r\\n
    HTTP/1.1 200 OK\\r\\n ... \\r\\n\\r\\n<html>...          <- the block: 1234 bytes
    \\r\\n\\r\\n

In a WARC ``response`` record the block is the raw HTTP response; in a WET ``conversion`` record it
is the page's extracted UTF-8 text. ``.gz`` files compress each record as its own gzip member.

Crawl files are damaged in practice -- cut-off downloads, bytes overwritten, a wrong length -- and a
pipeline over millions of them must neither crash nor silently lose good records. So reading is
two small layers, both written here (fastwarc, a fast C++ reader, stops at the first corrupt gzip
member and loses the records of a garbage region's neighbour; it stays the benchmark's peer):

1. **Bytes.** ``_decompressed_pieces`` yields the file's bytes, gzip members decompressed one after
   the other with ``zlib``. Compressed bytes that do not decompress (a corrupt member, garbage
   between members) become a *gap*: decompression restarts at the next gzip member header
   (``1f 8b 08``) after the start of the broken member.
2. **Records.** ``_parse_records`` reads a record at a time and checks it: the header starts with
   ``WARC/1.`` and ends within 64 KiB, ``Content-Length`` is a number, the block is all there (no
   end of file and no gap inside it) and is followed by ``\\r\\n\\r\\n`` or the next record -- a
   wrong length shows up here instead of gluing two records together. On any failure it
   **resynchronises**: it looks for the next ``WARC/1.`` *anywhere* after the start of the broken
   record (a garbage region need not end with a newline) and parses from there, so a record
   swallowed by its broken neighbour is recovered.

Every record is accounted for: ``stats.read`` good records of the requested types were returned,
``stats.skipped`` counts *bad regions* (a run of adjacent broken records between two good ones
counts once), by reason in ``stats.reasons``. A ``response`` whose block is not an HTTP response
is a bad region too ("not http"). Records longer than ``max_block_bytes`` keep only their first
``max_block_bytes`` (``record.truncated``; the rest is read past without being held in memory,
as Common Crawl itself truncates payloads at 1 MiB).

Usage::

    records, stats = read_warc("CC-MAIN-...-00000.warc.gz")
    for record in records:          # WarcRecord(url=..., record_type="response", payload=b"<html>...")
        ...
    print(stats.read, stats.skipped)

or ``for record in iter_warc_records(path): ...`` when the counts are not needed.

Simplifications: a corrupt member's output up to the point where zlib notices is kept (a record
that parses cleanly from it is returned); a block longer than ``max_block_bytes`` is not searched
for a resynchronisation point (its bytes are no longer held); HTTP chunked transfer encoding is not
undone (Common Crawl stores decoded bodies).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

RECORD_TYPES = (
    "warcinfo",
    "response",
    "resource",
    "request",
    "metadata",
    "revisit",
    "conversion",
    "continuation",
)
_VERSION = b"WARC/1."  # every record header starts with the version line
_GZIP_MAGIC = b"\x1f\x8b\x08"  # a gzip member header: magic number and "deflate"
_READ = 1 << 20  # bytes per read from disk, and most bytes per decompression step
_MAX_HEADER = 1 << 16  # a header longer than this is garbage
_MAX_MEMBER_HISTORY = 1 << 26  # compressed bytes of one member kept to resynchronise inside it
DEFAULT_MAX_BLOCK_BYTES = 1 << 24  # 16 MiB: longer blocks are truncated (counted)


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
    truncated: bool = False  # the block was longer than max_block_bytes and was cut

    def http_header(self, name: str, default: str = "") -> str:
        """An HTTP header of a response record, by case-insensitive name."""
        name = name.lower()
        return next((v for k, v in self.http_headers.items() if k.lower() == name), default)


@dataclass
class WarcStats:
    """Counts for one pass over a file; filled in while the iterator runs."""

    read: int = 0  # good records returned
    skipped: int = 0  # bad regions skipped (malformed or truncated records, garbage bytes)
    resyncs: int = 0  # times the reader searched for the next "WARC/1." after a bad region
    truncated: int = 0  # records returned with their block cut at max_block_bytes
    gaps: int = 0  # runs of compressed bytes that did not decompress (corrupt gzip data)
    reasons: dict[str, int] = field(default_factory=dict)  # skipped regions by reason


# ---- 1. bytes -----------------------------------------------------------------------------------


def _decompressed_pieces(path: Path, stats: WarcStats) -> Iterator[bytes | None]:
    """The bytes of ``path`` in pieces (gzip members decompressed); ``None`` marks a gap."""
    with open(path, "rb") as handle:
        if handle.read(2) != _GZIP_MAGIC[:2]:
            handle.seek(0)
            while piece := handle.read(_READ):
                yield piece
            return
        handle.seek(0)
        yield from _gzip_pieces(handle, stats)


def _gzip_pieces(handle, stats: WarcStats) -> Iterator[bytes | None]:
    data = b""  # compressed bytes read but not yet decompressed
    member = bytearray()  # compressed bytes of the current member so far, to rescan after an error
    decompressor = None  # None between members
    while True:
        if len(data) < len(_GZIP_MAGIC):
            more = handle.read(_READ)
            if not more and not data:
                return  # end of file (inside a member: its output so far was all there is)
            data += more
            if not more and decompressor is None and not data.startswith(_GZIP_MAGIC):
                stats.gaps += 1
                yield None  # a few stray bytes at the very end
                return
        if decompressor is None:
            if not data.startswith(_GZIP_MAGIC):  # garbage between members
                stats.gaps += 1
                yield None
                data = _skip_to_member(data, handle)
                continue
            decompressor, member = zlib.decompressobj(wbits=31), bytearray()  # 31: a gzip header
        try:
            # At most _READ bytes out per step: a "gzip bomb" cannot blow up memory.
            out = decompressor.decompress(data, _READ)
        except zlib.error:  # corrupt member: rescan its bytes (after its magic) for the next one
            stats.gaps += 1
            yield None
            decompressor = None
            data = _skip_to_member(bytes(member[1:]) + data if member else data[1:], handle)
            continue
        consumed = len(data) - len(decompressor.unconsumed_tail) - len(decompressor.unused_data)
        if len(member) < _MAX_MEMBER_HISTORY:
            member += data[:consumed]
        if out:
            yield out
        if decompressor.eof:  # a member ended cleanly: the rest starts the next one
            data, decompressor = decompressor.unused_data, None
        else:
            data = decompressor.unconsumed_tail
            if not data and not out:
                data = handle.read(_READ)
                if not data:
                    return  # the file ends inside a member (a cut-off download)


def _skip_to_member(data: bytes, handle) -> bytes:
    """``data`` (and the file after it) from the next gzip member header on; b"" if none."""
    while True:
        index = data.find(_GZIP_MAGIC)
        if index >= 0:
            return data[index:]
        more = handle.read(_READ)
        if not more:
            return b""
        data = data[-(len(_GZIP_MAGIC) - 1) :] + more  # keep a tail: the magic may straddle reads


class _Stream:
    """The decompressed bytes as one sequence addressed by absolute offsets, read on demand;
    only the bytes from the record being parsed on are held."""

    def __init__(self, pieces: Iterator[bytes | None]):
        self.pieces = pieces
        self.buffer = bytearray()
        self.start = 0  # absolute offset of buffer[0]
        self.gaps: list[int] = []  # absolute offsets where missing bytes were skipped
        self.finished = False

    @property
    def end(self) -> int:
        return self.start + len(self.buffer)

    def _more(self) -> bool:
        piece = next(self.pieces, b"")
        if piece is None:
            self.gaps.append(self.end)
            return True
        if not piece:
            self.finished = True
            return False
        self.buffer += piece
        return True

    def ensure(self, upto: int) -> bool:
        """Read until bytes [.., upto) are here; False if the data ends first."""
        while self.end < upto and self._more():
            pass
        return self.end >= upto

    def get(self, lo: int, hi: int) -> bytes:
        return bytes(self.buffer[lo - self.start : hi - self.start])

    def find(self, needle: bytes, lo: int, limit: int | None = None) -> int:
        """Absolute offset of ``needle`` at or after ``lo`` (and before ``limit``), or -1. Without a
        limit the bytes scanned are released as the search goes (a garbage region may be long)."""
        while True:
            index = self.buffer.find(needle, max(lo - self.start, 0))
            if index >= 0:
                return self.start + index if limit is None or self.start + index < limit else -1
            if limit is not None and self.end >= limit:
                return -1
            lo = max(lo, self.end - len(needle) + 1)  # no match starts before here
            if limit is None:
                self.release(lo)
            if not self._more():
                return -1

    def release(self, upto: int) -> None:
        """Forget the bytes before ``upto`` (a gap at ``upto`` itself is kept)."""
        upto = min(max(upto, self.start), self.end)
        del self.buffer[: upto - self.start]
        self.start = upto
        self.gaps = [g for g in self.gaps if g >= upto]

    def skip_to(self, upto: int) -> str | None:
        """Read past the bytes before ``upto`` without holding them; the reason it could not, or None."""
        while self.end < upto:
            self.release(self.end)
            gaps = len(self.gaps)
            if not self._more():
                return "truncated"
            if len(self.gaps) > gaps:
                return "corrupt gzip data"
        self.release(upto)
        return None

    def gap_inside(self, lo: int, hi: int) -> bool:
        return any(lo < g < hi for g in self.gaps)


# ---- 2. records ---------------------------------------------------------------------------------


def _header_lines(raw: bytes) -> dict[str, str]:
    """``Name: value`` lines (a line starting with a space or tab continues the previous value)."""
    headers: dict[str, str] = {}
    name = None
    for line in raw.decode("utf-8", errors="replace").splitlines()[1:]:  # [0] is the version/status
        if line[:1] in (" ", "\t") and name is not None:
            headers[name] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            name = name.strip()
            headers[name] = value.strip()
    return headers


def _http_response(block: bytes) -> tuple[dict[str, str], bytes] | None:
    """``(headers, body)`` of an HTTP response block, or None when it is not one."""
    end = block.find(b"\r\n\r\n")
    cut = 4
    if end < 0:
        end, cut = block.find(b"\n\n"), 2
    status = block[: block.find(b"\n")].split()
    if end < 0 or len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        return None
    return _header_lines(block[:end]), block[end + cut :]


class _Bad(Exception):
    """A record that cannot be used: the reason counted in the stats, and where the next record
    starts when that is known (else the reader resynchronises)."""

    def __init__(self, reason: str, next_pos: int | None = None):
        super().__init__(reason)
        self.reason, self.next_pos = reason, next_pos


def _read_header(stream: _Stream, pos: int) -> tuple[dict[str, str], int]:
    """The WARC header lines of the record at ``pos`` and the offset of its block."""
    if not stream.ensure(pos + len(_VERSION)):
        raise _Bad("truncated")
    if stream.get(pos, pos + len(_VERSION)) != _VERSION:
        raise _Bad("unparseable")
    head_end = stream.find(b"\r\n\r\n", pos, pos + _MAX_HEADER)
    if head_end < 0:
        raise _Bad("truncated" if stream.finished else "unparseable")
    headers = _header_lines(stream.get(pos, head_end))
    if not headers.get("Content-Length", "").isdigit():
        raise _Bad("bad content-length")
    return headers, head_end + 4


def _after_block(stream: _Stream, block_end: int) -> int:
    """Where the next record starts, checking that the block really ends at ``block_end``: the
    trailer ``\r\n\r\n`` (or the next record) must follow, else the length was wrong."""
    stream.ensure(block_end + 4)
    rest = stream.get(block_end, block_end + 4)
    if rest == b"\r\n\r\n":
        return block_end + 4
    if stream.gap_inside(block_end - 1, block_end + 4):
        return block_end  # the trailer was lost with corrupt data: the block itself is whole
    if stream.finished and stream.end <= block_end + 4 and not rest.strip(b"\r\n"):
        return stream.end  # the file ends within the trailer
    stream.ensure(block_end + 4 + len(_VERSION))
    tail = stream.get(block_end, block_end + 4 + len(_VERSION))
    if tail.lstrip(b"\r\n").startswith(_VERSION):
        return block_end + len(tail) - len(tail.lstrip(b"\r\n"))
    raise _Bad("wrong content-length")  # neither the trailer nor the next record


def _read_record(stream: _Stream, pos: int, max_block: int, wanted: frozenset[str]) -> tuple[WarcRecord, int]:
    """The record starting at ``pos`` and the offset after it; raises ``_Bad``."""
    headers, block_start = _read_header(stream, pos)
    block_end = block_start + int(headers["Content-Length"])
    kept_end = min(block_end, block_start + max_block)
    if not stream.ensure(kept_end) or stream.gap_inside(pos, kept_end):
        raise _Bad("truncated" if stream.finished else "corrupt gzip data")
    block = stream.get(block_start, kept_end)
    if kept_end < block_end:  # a giant block: keep its start, read past the rest
        stream.release(kept_end)
        problem = stream.skip_to(block_end)
        if problem is not None:
            raise _Bad(problem)
    next_pos = _after_block(stream, block_end)
    record_type = headers.get("WARC-Type", "")
    payload, http_headers = block, {}
    if record_type == "response" and record_type in wanted:
        parsed = _http_response(block)
        if parsed is None:
            raise _Bad("not http", next_pos)  # a well-formed record: go on after it
        http_headers, payload = parsed
    record = WarcRecord(
        url=headers.get("WARC-Target-URI", ""),
        record_type=record_type,
        headers=headers,
        payload=payload,
        record_id=headers.get("WARC-Record-ID", ""),
        http_headers=http_headers,
        offset=pos,
        truncated=kept_end < block_end,
    )
    return record, next_pos


def _parse_records(
    path: Path, wanted: frozenset[str], stats: WarcStats, max_block: int
) -> Iterator[WarcRecord]:
    stream = _Stream(_decompressed_pieces(path, stats))
    pos, in_bad_region = 0, False  # count one skip per run of broken bytes between good records

    def bad(reason: str) -> None:
        nonlocal in_bad_region
        if not in_bad_region:
            stats.skipped += 1
            stats.reasons[reason] = stats.reasons.get(reason, 0) + 1
        in_bad_region = True

    while True:
        stream.release(pos)
        more = stream.ensure(pos + 1)
        if stream.gaps and stream.gaps[0] <= pos:  # compressed bytes were lost just before pos
            bad("corrupt gzip data")
            stream.gaps.pop(0)
        if not more:
            return  # the end of the data
        try:
            record, pos = _read_record(stream, pos, max_block, wanted)
        except _Bad as problem:
            bad(problem.reason)
            if problem.next_pos is not None:
                pos = problem.next_pos
                continue
            stats.resyncs += 1
            pos = stream.find(_VERSION, pos + 1)  # anywhere: garbage need not end with a newline
            if pos < 0:
                return
            continue
        in_bad_region = False
        if record.record_type in wanted:
            stats.read += 1
            stats.truncated += record.truncated
            yield record


def read_warc(
    path: str | Path,
    record_types: Iterable[str] = ("response", "conversion"),
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
) -> tuple[Iterator[WarcRecord], WarcStats]:
    """``(records, stats)`` for a WARC/WET file, gzip or not; ``stats`` fills in as you iterate.

    Only records whose WARC-Type is in ``record_types`` are returned; bad ones are skipped and
    counted in ``stats`` (see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WARC file not found: {path}")
    wanted = frozenset(record_types)
    unknown = sorted(wanted - set(RECORD_TYPES))
    if unknown:
        raise ValueError(f"unknown WARC record type {unknown[0]!r}; choose from {', '.join(RECORD_TYPES)}")
    if max_block_bytes < 1:
        raise ValueError(f"max_block_bytes must be >= 1, got {max_block_bytes}")
    stats = WarcStats()
    return _parse_records(path, wanted, stats, max_block_bytes), stats


def iter_warc_records(
    path: str | Path, record_types: Iterable[str] = ("response", "conversion")
) -> Iterator[WarcRecord]:
    """The good records of ``path`` whose type is in ``record_types`` (see ``read_warc``)."""
    records, _ = read_warc(path, record_types)
    return records
