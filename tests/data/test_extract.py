"""Graders for HTML -> text: visible text survives, markup/scripts do not, every encoding we author
decodes to the same text, binary payloads give None."""

from __future__ import annotations

import gzip

import pytest

from tests.data.warc_factory import binary_payload, encode_page, html_page

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

PROSE = ["Grüße aus Köln – “zitiert” für 5 €.", "Crème brûlée, naïve café, œuvre."]


def test_latin9_page(adapters):
    paragraph = "Grüße aus Köln für 5 €, œuvre."
    html = html_page("Köln", [paragraph], charset="iso-8859-15")
    assert paragraph in adapters.run_extract_text_from_html_bytes(encode_page(html, "iso-8859-15"))


@pytest.mark.parametrize(
    "encoding, meta", [("shift_jis", "shift_jis"), ("shift_jis", None), ("euc-jp", "euc-jp")]
)
def test_japanese_encodings(adapters, encoding, meta):
    paragraphs = [
        "日本語のテキストです。東京は大きい都市です。",
        "今日は天気がいいので、公園を散歩しました。",
    ]
    html = html_page("日本", paragraphs, lang="ja", charset=meta or "")
    if meta is None:
        html = html.replace('<meta charset="">\n', "")
    text = adapters.run_extract_text_from_html_bytes(encode_page(html, encoding))
    for paragraph in paragraphs:
        assert paragraph in text


def test_utf16_and_bom(adapters):
    html = html_page("BOM", PROSE)
    for data in (encode_page(html, "utf-16"), b"\xef\xbb\xbf" + encode_page(html, "utf-8")):
        text = adapters.run_extract_text_from_html_bytes(data)
        assert PROSE[0] in text and "\ufeff" not in text


@pytest.mark.parametrize(
    "payload",
    [
        binary_payload(4000, seed=0),  # PNG
        b"\xff\xd8\xff\xe0" + binary_payload(3000, seed=1)[8:],  # JPEG
        b"%PDF-1.7\n" + binary_payload(3000, seed=2),
        gzip.compress(html_page("zipped", PROSE).encode()),
        bytes(range(256)) * 20,  # NUL and control bytes, no signature
    ],
    ids=["png", "jpeg", "pdf", "gzip", "bytes"],
)
def test_binary_payloads_give_none(adapters, payload):
    assert adapters.run_extract_text_from_html_bytes(payload) is None


def test_random_bytes_without_nul_give_none(adapters):
    import random

    rng = random.Random(7)
    payload = bytes(rng.randrange(1, 256) for _ in range(5000))
    assert adapters.run_extract_text_from_html_bytes(payload) is None


def test_plain_text_and_empty(adapters):
    assert adapters.run_extract_text_from_html_bytes(b"just some text, no tags") == "just some text, no tags"
    assert adapters.run_extract_text_from_html_bytes(b"") in ("", None)


@pytest.mark.parametrize("encoding, meta", [("cp1251", "windows-1251"), ("koi8-r", None)])
def test_cyrillic_encodings(adapters, encoding, meta):
    paragraph = "Привет, как дела? Это русский текст, написанный для проверки кодировки страницы."
    if meta:
        html = f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={meta}"></head><body><p>{paragraph}</p></body></html>'
    else:
        html = f"<html><body><p>{paragraph}</p></body></html>"
    assert paragraph in adapters.run_extract_text_from_html_bytes(encode_page(html, encoding))


def test_encoding_hint(adapters):
    paragraph = "Grüße aus Köln, für 5 €."
    data = encode_page(f"<p>{paragraph}</p>", "cp1252")
    # a wrong hint that cannot decode the bytes is ignored
    assert paragraph in adapters.run_extract_text_from_html_bytes(data, encoding_hint="utf-8")
    # a right hint is used
    assert paragraph in adapters.run_extract_text_from_html_bytes(data, encoding_hint="windows-1252")
    # a hint that decodes (every byte is valid latin-1) wins, as in a browser: no euro sign then
    assert "€" not in adapters.run_extract_text_from_html_bytes(data, encoding_hint="latin-1")
