"""Turn the raw HTML bytes of a crawled page into plain text (handout section 2.2, "HTML to text").

Three steps, each of which can fail on real crawl data:

1. **Is it text at all?** Crawls contain images, PDFs and archives served as ``text/html``.
   Known binary signatures (PNG, JPEG, GIF, PDF, ZIP, gzip, ...) and NUL bytes in the first
   kilobytes mean "binary" -- unless a UTF-16 byte-order mark says the NULs are half of UTF-16
   characters.
2. **Which encoding?** ``resiliparse.parse.encoding.detect_encoding`` reads the ``<meta charset>``
   tag if there is one and otherwise asks uchardet. We then try to decode *strictly* with, in
   order: an encoding hint from the HTTP ``Content-Type`` header (if the caller has one), the
   detected encoding, UTF-8, and Windows-1252 (what browsers do for unlabelled Western pages). The
   first one that decodes without error wins; if none does the page is undecodable and we return
   ``None`` rather than guess.
3. **Extract.** ``resiliparse.extract.html2text.extract_plain_text`` drops scripts, styles and
   comments and keeps visible text; a decoded string that is mostly control characters is treated
   as binary after all.

>>> extract_text_from_html_bytes(b"<html><body><h1>Hi</h1><p>caf\\xe9</p></body></html>")
'Hi\\n\\ncafé'
>>> extract_text_from_html_bytes(b"\\x89PNG\\r\\n\\x1a\\n...") is None
True

Simplification: no boilerplate removal by default (``main_content=True`` turns on resiliparse's
heuristics), and the HTTP ``Content-Encoding`` (gzip/brotli bodies) is assumed to be already
undone by the WARC reader -- Common Crawl stores decoded bodies.
"""

from __future__ import annotations

import codecs

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import detect_encoding

# Leading bytes of common binary formats that crawls mislabel as HTML.
BINARY_SIGNATURES = (
    b"\x89PNG",  # PNG
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"%PDF-",
    b"PK\x03\x04",  # ZIP, docx, xlsx, jar
    b"\x1f\x8b",  # gzip
    b"BZh",  # bzip2
    b"\xfd7zXZ\x00",  # xz
    b"RIFF",  # WebP, WAV, AVI
    b"\x00\x00\x01\x00",  # ICO
    b"OggS",
    b"ID3",  # MP3
    b"\x7fELF",
    b"wOFF",  # web fonts
    b"wOF2",
)
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
SNIFF_BYTES = 4096  # how far into the payload we look for NUL bytes
MAX_CONTROL_FRACTION = 0.05  # decoded text with more control characters than this is binary


def looks_binary(data: bytes) -> bool:
    """True for payloads that start with a known binary signature or contain NUL bytes."""
    if data.startswith(BINARY_SIGNATURES):
        return True
    if data.startswith(UTF16_BOMS):
        return False  # UTF-16 text is full of NULs
    return b"\x00" in data[:SNIFF_BYTES]


def _control_fraction(text: str) -> float:
    sample = text[:SNIFF_BYTES]
    if not sample:
        return 0.0
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f" or 0x7F <= ord(ch) < 0xA0)
    return control / len(sample)


def decode_html_bytes(html_bytes: bytes, encoding_hint: str | None = None) -> str | None:
    """Decode ``html_bytes`` with the first of hint / detected / UTF-8 / cp1252 that fits, else None."""
    if html_bytes.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif html_bytes.startswith(UTF16_BOMS):
        candidates = ["utf-16"]
    else:
        detected = detect_encoding(html_bytes, from_html_meta=True)
        candidates = [encoding_hint, detected, "utf-8", "cp1252"]
    for name in candidates:
        if not name:
            continue
        try:
            return html_bytes.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue  # wrong guess, or a label Python does not know: try the next one
    return None


def extract_text_from_html_bytes(
    html_bytes: bytes, encoding_hint: str | None = None, main_content: bool = False
) -> str | None:
    """Plain text of an HTML page given as raw bytes; ``None`` for binary or undecodable payloads.

    ``encoding_hint`` is the charset from the HTTP header, tried first when given (a wrong hint
    that still decodes wins, as it would in a browser). Empty pages give ``""``.
    """
    if not isinstance(html_bytes, bytes | bytearray | memoryview):
        raise ValueError(f"extract_text_from_html_bytes expects bytes, got {type(html_bytes).__name__}")
    html_bytes = bytes(html_bytes)
    if looks_binary(html_bytes):
        return None
    html = decode_html_bytes(html_bytes, encoding_hint)
    if html is None or _control_fraction(html) > MAX_CONTROL_FRACTION:
        return None
    return extract_plain_text(html, main_content=main_content)
