"""Graders for the WARC/WET reader: every good record comes back intact, every bad one is skipped
and counted, nothing raises. The files are written by tests/data/warc_factory.py (by hand, not
with the library under test)."""

from __future__ import annotations

import gzip
import random

import pytest

from tests.data.warc_factory import (
    MALFORMED_KINDS,
    Page,
    binary_payload,
    encode_page,
    html_page,
    sample_pages,
    write_warc,
    write_wet,
)

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

SUFFIXES = [".warc", ".warc.gz"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_clean_warc_returns_every_response(adapters, tmp_path, suffix):
    written = write_warc(tmp_path / f"clean{suffix}", sample_pages(6), with_requests=True)
    records, skipped = adapters.run_read_warc(written.path)
    assert skipped == 0
    assert [r.url for r in records] == written.urls
    assert [r.payload for r in records] == written.payloads  # HTTP body, headers stripped
    assert [r.record_id for r in records] == written.record_ids
    assert all(r.record_type == "response" for r in records)
    assert all(r.headers["WARC-Type"] == "response" for r in records)


@pytest.mark.parametrize("suffix", [".warc.wet", ".warc.wet.gz"])
def test_wet_conversion_records(adapters, tmp_path, suffix):
    docs = [
        (f"http://wet{i}.example/", f"Plain text number {i}.\nSecond line ünïcödé {i}.") for i in range(5)
    ]
    written = write_wet(tmp_path / f"x{suffix}", docs)
    records = list(adapters.iter_warc_records(written.path))
    assert [r.url for r in records] == [u for u, _ in docs]
    assert [r.payload.decode("utf-8") for r in records] == [t for _, t in docs]
    assert all(r.record_type == "conversion" for r in records)


def test_record_type_selection(adapters, tmp_path):
    written = write_warc(tmp_path / "x.warc.gz", sample_pages(3), with_requests=True)
    requests = list(adapters.iter_warc_records(written.path, record_types=("request",)))
    assert [r.url for r in requests] == written.urls
    assert all(r.payload.startswith(b"GET / HTTP/1.1") for r in requests)
    infos = list(adapters.iter_warc_records(written.path, record_types=("warcinfo",)))
    assert len(infos) == 1 and infos[0].record_type == "warcinfo"


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_malformed_record_is_skipped_and_counted(adapters, tmp_path, suffix, kind):
    pages = sample_pages(5, seed=1)
    written = write_warc(tmp_path / f"bad{suffix}", pages, malformed={2: kind})
    records, skipped = adapters.run_read_warc(written.path)
    assert [r.url for r in records] == written.urls  # all five good pages, in order
    assert [r.payload for r in records] == written.payloads
    assert skipped == 1


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_several_malformed_records_and_garbage_at_start(adapters, tmp_path, suffix):
    pages = sample_pages(7, seed=2)
    malformed = {0: "garbage", 2: "bad_version", 4: "no_length", 6: "bad_length"}
    written = write_warc(
        tmp_path / f"bad{suffix}", pages, malformed=malformed, warcinfo=False, with_requests=True
    )
    records, skipped = adapters.run_read_warc(written.path)
    assert [r.url for r in records] == written.urls
    assert skipped == len(malformed)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_truncated_file_keeps_complete_records(adapters, tmp_path, suffix):
    pages = sample_pages(4, seed=3)
    written = write_warc(tmp_path / f"trunc{suffix}", pages, truncate_last=60)
    records, skipped = adapters.run_read_warc(written.path)
    assert [r.url for r in records] == written.urls[:3]
    assert [r.payload for r in records] == written.payloads[:3]
    assert skipped == 1


def test_truncated_mid_header_and_empty_file(adapters, tmp_path):
    pages = sample_pages(2, seed=4)
    full = write_warc(tmp_path / "full.warc", pages).path.read_bytes()
    cut = full[: full.rindex(b"WARC/1.0") + 30]  # the last record stops inside its header
    (tmp_path / "cut.warc").write_bytes(cut)
    records, skipped = adapters.run_read_warc(tmp_path / "cut.warc")
    assert [r.url for r in records] == [pages[0].url]
    assert skipped == 1
    (tmp_path / "empty.warc").write_bytes(b"")
    assert adapters.run_read_warc(tmp_path / "empty.warc") == ([], 0)


def test_non_utf8_and_binary_payloads_are_returned_as_bytes(adapters, tmp_path):
    cp1252 = encode_page(html_page("Grüße", ["Café – “crème brûlée”"], charset="windows-1252"), "cp1252")
    sjis = encode_page(html_page("日本", ["こんにちは世界"], charset="shift_jis"), "shift_jis")
    png = binary_payload(2000, seed=5)
    pages = [
        Page("http://de.example/", cp1252, "text/html; charset=windows-1252"),
        Page("http://jp.example/", sjis, "text/html; charset=shift_jis"),
        Page("http://img.example/x.png", png, "image/png"),
    ]
    written = write_warc(tmp_path / "mixed.warc.gz", pages)
    records = list(adapters.iter_warc_records(written.path))
    assert [r.payload for r in records] == [cp1252, sjis, png]


def test_missing_file_raises(adapters, tmp_path):
    with pytest.raises(FileNotFoundError):
        list(adapters.iter_warc_records(tmp_path / "nope.warc.gz"))


def test_records_pickle_for_worker_processes(adapters, tmp_path):
    import pickle

    written = write_warc(tmp_path / "x.warc", sample_pages(2))
    records = list(adapters.iter_warc_records(written.path))
    # our own records, pickled here only to prove they can cross a process boundary
    assert [r.payload for r in pickle.loads(pickle.dumps(records))] == written.payloads


def test_response_without_http_block_is_skipped(adapters, tmp_path):
    from tests.data.warc_factory import HTTP_RESPONSE, warc_record

    good = write_warc(tmp_path / "good.warc", sample_pages(2), warcinfo=False).path.read_bytes()
    no_status = warc_record(
        "response", b"not an http response\r\n\r\nbody", url="http://x/", content_type=HTTP_RESPONSE
    )
    not_http = warc_record("response", b"<html>plain</html>", url="http://y/", content_type="text/html")
    (tmp_path / "mixed.warc").write_bytes(good + no_status + good + not_http + good)
    records, skipped = adapters.run_read_warc(tmp_path / "mixed.warc")
    assert [r.url for r in records] == [p.url for p in sample_pages(2)] * 3
    assert skipped == 2


@pytest.mark.parametrize("suffix", [".warc.wet", ".warc.wet.gz"])
def test_wet_with_malformed_and_truncated_records(adapters, tmp_path, suffix):
    docs = [(f"http://wet{i}.example/", f"Document {i}: some extracted plain text.") for i in range(6)]
    written = write_wet(
        tmp_path / f"bad{suffix}", docs, malformed={1: "garbage", 4: "short_block"}, truncate_last=20
    )
    records, skipped = adapters.run_read_warc(written.path)
    assert [r.url for r in records] == written.urls[:5]  # the last document was cut off
    assert [r.payload for r in records] == written.payloads[:5]
    assert skipped == 3  # garbage, the oversized record, the truncated tail


# ---- damage the course's reader must survive: every record accounted for ---------------------------


def record_bytes(pages, **kwargs) -> list[bytes]:
    """The raw (uncompressed) records ``write_warc`` would write for ``pages``, one per item."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        raw = write_warc(Path(tmp) / "x.warc", pages, warcinfo=False, **kwargs).path.read_bytes()
    starts = [i for i in range(len(raw)) if raw.startswith(b"WARC/1.0\r\nWARC-Type", i)]
    return [raw[a:b] for a, b in zip(starts, starts[1:] + [len(raw)])]


GARBAGE = bytes(random.Random(0).randrange(256) for _ in range(500)).replace(b"WARC", b"W@RC")


@pytest.mark.extension
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_garbage_without_a_newline_does_not_swallow_the_next_record(adapters, tmp_path, suffix):
    pages = sample_pages(6, seed=6)
    records = record_bytes(pages)
    damaged = records[:3] + [GARBAGE.rstrip(b"\r\n") + records[3]] + records[4:]  # no line break after it
    path = tmp_path / f"g{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(b"".join(gzip.compress(r, mtime=0) for r in damaged))
    else:
        path.write_bytes(b"".join(damaged))
    got, skipped = adapters.run_read_warc(path)
    assert [r.url for r in got] == [p.url for p in pages]
    assert skipped == 1


def corrupt_member(member: bytes) -> bytes:
    middle = len(member) // 2
    return member[:middle] + bytes(64) + member[middle + 64 :]


@pytest.mark.extension
@pytest.mark.parametrize(
    "damage",
    ["garbage between members", "corrupt member", "member cut short", "two corrupt members in a row"],
)
def test_gzip_damage_resynchronises_at_the_next_member(adapters, tmp_path, damage):
    pages = sample_pages(8, seed=7)
    members = [gzip.compress(r, mtime=0) for r in record_bytes(pages)]
    lost: set[int] = set()
    if damage == "garbage between members":
        members[4:4] = [GARBAGE]
    elif damage == "corrupt member":
        members[4], lost = corrupt_member(members[4]), {4}
    elif damage == "member cut short":
        members[4], lost = members[4][: len(members[4]) // 3], {4}
    else:
        members[4], members[5], lost = corrupt_member(members[4]), corrupt_member(members[5]), {4, 5}
    path = tmp_path / "d.warc.gz"
    path.write_bytes(b"".join(members))
    got, skipped = adapters.run_read_warc(path)
    assert [r.url for r in got] == [p.url for i, p in enumerate(pages) if i not in lost]
    assert [r.payload for r in got] == [p.body for i, p in enumerate(pages) if i not in lost]
    assert skipped == 1  # one damaged region, whatever it held


@pytest.mark.extension
def test_records_split_across_gzip_members_at_any_byte(adapters, tmp_path):
    pages = sample_pages(5, seed=8)
    raw = b"".join(record_bytes(pages))
    members = [gzip.compress(raw[i : i + 700], mtime=0) for i in range(0, len(raw), 700)]  # like bgzip
    (tmp_path / "b.warc.gz").write_bytes(b"".join(members))
    got, skipped = adapters.run_read_warc(tmp_path / "b.warc.gz")
    assert [r.payload for r in got] == [p.body for p in pages] and skipped == 0


@pytest.mark.extension
def test_content_length_too_small_is_caught(adapters, tmp_path):
    pages = sample_pages(4, seed=9)
    records = record_bytes(pages)
    length = records[1].split(b"Content-Length: ")[1].split(b"\r\n")[0]
    records[1] = records[1].replace(b"Content-Length: " + length, b"Content-Length: %d" % (int(length) - 40))
    (tmp_path / "s.warc").write_bytes(b"".join(records))
    got, skipped = adapters.run_read_warc(tmp_path / "s.warc")
    assert [r.url for r in got] == [pages[i].url for i in (0, 2, 3)]  # not page 1 cut short
    assert skipped == 1


@pytest.mark.extension
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_giant_block_is_truncated_and_the_rest_read(adapters, tmp_path, suffix):
    pages = sample_pages(3, seed=10)
    giant = Page("http://giant.example/", b"<html><body>" + b"<p>word</p>" * 200_000 + b"</body></html>")
    written = write_warc(tmp_path / f"big{suffix}", [pages[0], giant, pages[1], pages[2]])
    got, skipped = adapters.run_read_warc(written.path, max_block_bytes=50_000)
    assert [r.url for r in got] == written.urls and skipped == 0
    assert [r.truncated for r in got] == [False, True, False, False]
    assert len(got[1].payload) < 50_000 and giant.body.startswith(got[1].payload)
    assert [r.payload for r in got[2:]] == written.payloads[2:]


@pytest.mark.extension
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_clean_files_read_like_fastwarc(adapters, tmp_path, suffix):
    from fastwarc.warc import ArchiveIterator, WarcRecordType  # the C++ reader, as a peer

    written = write_warc(tmp_path / f"p{suffix}", sample_pages(5, seed=11), with_requests=True)
    ours = adapters.run_read_warc(written.path, record_types=("warcinfo", "request", "response"))[0]
    with open(written.path, "rb") as f:
        peer = []
        for record in ArchiveIterator(f, record_types=WarcRecordType.any_type, parse_http=False):
            if record.record_type == WarcRecordType.response:
                record.parse_http()  # the payload of a response is the HTTP body
            body = record.reader.read()
            peer.append((record.headers.get("WARC-Target-URI") or "", record.record_id, body))
    assert [(r.url, r.record_id, r.payload) for r in ours] == peer
