"""Graders for HTML -> text: visible text survives, markup/scripts do not, every encoding we author
decodes to the same text, binary payloads give None."""


from __future__ import annotations

import pytest

from tests.data.warc_factory import encode_page, html_page

pytestmark = pytest.mark.core


PROSE = ["Grüße aus Köln – “zitiert” für 5 €.", "Crème brûlée, naïve café, œuvre."]


@pytest.mark.points(2, problem="extract_text")
def test_visible_text_only(adapters):
    html = (
        b"<!DOCTYPE html><html><head><title>T</title><style>p { color: red }</style>"
        b"<script>var secret = 'do not show';</script></head><body><!-- hidden comment -->"
        b"<h1>Heading</h1><p>First <b>bold</b> paragraph.</p><ul><li>one</li><li>two</li></ul></body></html>"
    )
    text = adapters.run_extract_text_from_html_bytes(html)
    for visible in ("Heading", "First bold paragraph.", "one", "two"):
        assert visible in text
    for hidden in ("secret", "color", "hidden comment", "<p>", "<b>"):
        assert hidden not in text


@pytest.mark.points(1, problem="extract_text")
def test_entities_are_decoded(adapters):
    text = adapters.run_extract_text_from_html_bytes(
        b"<p>Tom &amp; Jerry &lt;3 &eacute;t&eacute; &#8364;</p>"
    )
    assert text == "Tom & Jerry <3 été €"


@pytest.mark.points(1, problem="extract_text")
@pytest.mark.parametrize(
    "encoding, meta",
    [("utf-8", "utf-8"), ("cp1252", "windows-1252"), ("cp1252", None)],
)
def test_western_encodings(adapters, encoding, meta):
    html = html_page("Grüße", PROSE, charset=meta or "")
    if meta is None:  # no <meta charset>: the detector must work from the bytes alone
        html = html.replace('<meta charset="">\n', "")
    text = adapters.run_extract_text_from_html_bytes(encode_page(html, encoding))
    for paragraph in PROSE:
        assert paragraph in text
