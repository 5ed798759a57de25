"""Write small WARC and WET files for the data graders -- by hand, without fastwarc.

Common Crawl ships two kinds of files we read:

* WARC: one ``response`` record per fetched page; its block is the raw HTTP response
  (status line, headers, blank line, body bytes).
* WET: one ``conversion`` record per page; its block is the extracted plain text (UTF-8).

Both begin with a ``warcinfo`` record, and the ``.gz`` variants compress every record as its own
gzip member (so a reader can seek to any record). This module writes exactly that layout from a
list of ``(url, body)`` pairs, plus the damage a real crawl contains, so the tests exercise the
reader on inputs they fully control:

>>> from tests.data.warc_factory import write_warc, write_wet, html_page
>>> pages = [("http://a.example/", html_page("A", ["Hello there."]))]
>>> write_warc(tmp_path / "x.warc.gz", pages)                         # doctest: +SKIP
>>> write_wet(tmp_path / "x.warc.wet", [("http://a.example/", "Hello there.")])  # doctest: +SKIP

Damage options (all keyword arguments of ``write_warc`` / ``write_wet``):

* ``malformed={i: kind}`` replaces the i-th document's record by a broken one. Kinds:
  ``"bad_version"`` (first line is not ``WARC/1.x``), ``"bad_length"`` (non-numeric
  Content-Length), ``"no_length"`` (Content-Length missing), ``"garbage"`` (random bytes
  instead of a record), ``"short_block"`` (Content-Length larger than the block, the
  record swallows bytes of the next one -- a truncated download glued to another file).
  Broken records are *extra* pages: the i-th good page is still written after it.
* ``truncate_last=n`` cuts ``n`` bytes off the end of the file (mid-record truncation; with
  gzip the last member is cut, as in an interrupted download).
* Pages may be any bytes: use ``encode_page(html, "cp1252")`` / ``"shift_jis"`` for non-UTF-8
  pages (the HTTP Content-Type header then names that charset, or omits it with
  ``charset_in_header=False``), and ``binary_payload(n)`` for image-like bodies
  (``Page(..., content_type="image/png")``).
* ``with_requests=True`` interleaves a ``request`` record before each response, as real WARC
  files do (readers asked for responses must skip them).

Every written file is returned together with the list of *expected* good documents so a test
can compare what a reader yields against what was written.
"""

from __future__ import annotations

import gzip as gzip_module
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

WARC_DATE = "2024-01-01T00:00:00Z"
HTTP_RESPONSE = "application/http; msgtype=response"
MALFORMED_KINDS = ("bad_version", "bad_length", "no_length", "garbage", "short_block")


@dataclass(frozen=True)
class Page:
    """One fetched page: the URL, the body bytes and the HTTP Content-Type to announce."""

    url: str
    body: bytes
    content_type: str = "text/html; charset=utf-8"  # HTTP Content-Type header of the response
    status: int = 200  # HTTP status code


@dataclass(frozen=True)
class Written:
    """What a factory call wrote: the file and the documents a correct reader must return."""

    path: Path
    urls: list[str]  # target URIs of the good (readable) records, in file order
    payloads: list[bytes]  # their payloads: HTTP body for WARC responses, UTF-8 text for WET
    record_ids: list[str]  # their WARC-Record-IDs
    num_malformed: int  # broken records inserted (not counting a truncated tail)


def html_page(title: str, paragraphs: list[str], *, lang: str = "en", charset: str = "utf-8") -> str:
    """A small, well-formed HTML document (as ``str``; encode it with ``encode_page``)."""
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="{charset}">\n'
        f"<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
    )


def encode_page(html: str, encoding: str = "utf-8") -> bytes:
    """``html`` encoded in ``encoding`` (e.g. ``"cp1252"``, ``"shift_jis"``); errors raise."""
    return html.encode(encoding)


def binary_payload(num_bytes: int = 4096, seed: int = 0) -> bytes:
    """PNG-looking bytes: the PNG signature then seeded random bytes (not decodable text)."""
    rng = random.Random(seed)
    return b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(max(0, num_bytes - 8)))


def record_id(seed: str) -> str:
    """A deterministic ``<urn:uuid:...>`` for a record, derived from ``seed``."""
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, seed)}>"


def warc_record(
    record_type: str,
    block: bytes,
    *,
    url: str | None = None,
    content_type: str,
    rid: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """One raw WARC/1.0 record: header lines, blank line, ``block``, then ``\\r\\n\\r\\n``."""
    headers = {
        "WARC-Type": record_type,
        "WARC-Date": WARC_DATE,
        "WARC-Record-ID": rid or record_id(f"{record_type}:{url}:{len(block)}"),
    }
    if url is not None:
        headers["WARC-Target-URI"] = url
    headers.update(extra_headers or {})
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(block))
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("utf-8") + block + b"\r\n\r\n"


def http_response(page: Page, *, charset_in_header: bool = True) -> bytes:
    """The HTTP response block of a WARC ``response`` record for ``page``."""
    content_type = page.content_type
    if not charset_in_header:
        content_type = content_type.split(";")[0]
    head = (
        f"HTTP/1.1 {page.status} OK\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(page.body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + page.body


def malformed_record(kind: str, index: int) -> bytes:
    """A broken record of the given ``kind`` (see the module docstring)."""
    url = f"http://malformed.example/{index}"
    body = http_response(Page(url, f"<html><body><p>broken record {index}</p></body></html>".encode()))
    if kind == "bad_version":
        return warc_record("response", body, url=url, content_type=HTTP_RESPONSE).replace(
            b"WARC/1.0", b"WORC/9.9", 1
        )
    if kind == "bad_length":
        good = warc_record("response", body, url=url, content_type=HTTP_RESPONSE)
        return good.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: twelve", 1)
    if kind == "no_length":
        good = warc_record("response", body, url=url, content_type=HTTP_RESPONSE)
        return good.replace(f"Content-Length: {len(body)}\r\n".encode(), b"", 1)
    if kind == "garbage":
        rng = random.Random(index)
        return bytes(rng.randrange(256) for _ in range(300)) + b"\r\n\r\n"
    if kind == "short_block":
        good = warc_record("response", body, url=url, content_type=HTTP_RESPONSE)
        return good.replace(
            f"Content-Length: {len(body)}".encode(), f"Content-Length: {len(body) + 10_000}".encode(), 1
        )
    raise ValueError(f"unknown malformed kind {kind!r}; choose from {', '.join(MALFORMED_KINDS)}")


def _as_page(item: Page | tuple[str, bytes | str]) -> Page:
    if isinstance(item, Page):
        return item
    url, body = item
    return Page(url, body.encode("utf-8") if isinstance(body, str) else body)


def _warcinfo(filename: str) -> bytes:
    block = b"software: tests/data/warc_factory.py\r\nformat: WARC File Format 1.0\r\n"
    return warc_record(
        "warcinfo",
        block,
        content_type="application/warc-fields",
        rid=record_id(f"warcinfo:{filename}"),
        extra_headers={"WARC-Filename": filename},
    )


def _write(path: Path, records: list[bytes], gzip: bool | None, truncate_last: int) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    use_gzip = path.suffix == ".gz" if gzip is None else gzip
    if use_gzip:  # one gzip member per record, as in Common Crawl
        data = b"".join(gzip_module.compress(r, mtime=0) for r in records)
    else:
        data = b"".join(records)
    if truncate_last:
        data = data[: max(0, len(data) - truncate_last)]
    path.write_bytes(data)


def write_warc(
    path: str | Path,
    pages: list[Page | tuple[str, bytes | str]],
    *,
    gzip: bool | None = None,
    malformed: dict[int, str] | None = None,
    truncate_last: int = 0,
    with_requests: bool = False,
    charset_in_header: bool = True,
    warcinfo: bool = True,
) -> Written:
    """Write a WARC file of ``response`` records, one per page (``gzip=None``: by the ``.gz`` suffix).

    ``malformed={i: kind}`` inserts a broken record before the i-th page. ``truncate_last`` cuts
    bytes off the end; the truncated record is then *not* among the expected documents only if
    the cut reaches into it -- tests that truncate should compare prefixes (see ``Written``).
    """
    path = Path(path)
    malformed = dict(malformed or {})
    records = [_warcinfo(path.name)] if warcinfo else []
    urls, payloads, rids = [], [], []
    for i, item in enumerate(pages):
        page = _as_page(item)
        if i in malformed:
            records.append(malformed_record(malformed[i], i))
        if with_requests:
            request = f"GET / HTTP/1.1\r\nHost: {page.url.split('/')[2]}\r\n\r\n".encode()
            records.append(
                warc_record(
                    "request",
                    request,
                    url=page.url,
                    content_type="application/http; msgtype=request",
                    rid=record_id(f"request:{i}:{page.url}"),
                )
            )
        rid = record_id(f"response:{i}:{page.url}")
        block = http_response(page, charset_in_header=charset_in_header)
        records.append(warc_record("response", block, url=page.url, rid=rid, content_type=HTTP_RESPONSE))
        urls.append(page.url)
        payloads.append(page.body)
        rids.append(rid)
    _write(path, records, gzip, truncate_last)
    return Written(path, urls, payloads, rids, len(malformed))


def write_wet(
    path: str | Path,
    docs: list[tuple[str, str | bytes]],
    *,
    gzip: bool | None = None,
    malformed: dict[int, str] | None = None,
    truncate_last: int = 0,
    warcinfo: bool = True,
) -> Written:
    """Write a WET file of ``conversion`` records (text/plain), one per ``(url, text)``."""
    path = Path(path)
    malformed = dict(malformed or {})
    records = [_warcinfo(path.name)] if warcinfo else []
    urls, payloads, rids = [], [], []
    for i, (url, text) in enumerate(docs):
        if i in malformed:
            records.append(malformed_record(malformed[i], i))
        block = text.encode("utf-8") if isinstance(text, str) else text
        rid = record_id(f"conversion:{i}:{url}")
        records.append(
            warc_record(
                "conversion",
                block,
                url=url,
                rid=rid,
                content_type="text/plain",
                extra_headers={
                    "WARC-Refers-To": record_id(f"response:{i}:{url}"),
                    "WARC-Identified-Content-Language": "eng",
                },
            )
        )
        urls.append(url)
        payloads.append(block)
        rids.append(rid)
    _write(path, records, gzip, truncate_last)
    return Written(path, urls, payloads, rids, len(malformed))


def sample_pages(num_pages: int, seed: int = 0) -> list[Page]:
    """``num_pages`` distinct English HTML pages with seeded filler prose (for bulk tests)."""
    rng = random.Random(seed)
    words = (
        "the river valley was quiet in the early morning while farmers walked to their fields and "
        "children carried water from the old stone well near the church before school began"
    ).split()
    pages = []
    for i in range(num_pages):
        paragraphs = [
            " ".join(rng.choice(words) for _ in range(rng.randint(20, 40))).capitalize() + "."
            for _ in range(rng.randint(3, 6))
        ]
        pages.append(Page(f"http://site{i}.example/page", encode_page(html_page(f"Page {i}", paragraphs))))
    return pages
