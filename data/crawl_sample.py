"""A small Common Crawl-like WARC sample, built offline from any English documents.

The course's data assignment filters real Common Crawl files; a course run on a laptop has none, so
this module dresses documents up as crawled pages with what real crawls contain and the pipeline
must cope with (handout section 2: extraction, language ID, PII, harmful content, quality rules,
deduplication):

* **articles** -- each document as an HTML page wrapped in page chrome: a navigation bar, a cookie
  banner, "related" link lists and a footer (the kind of boilerplate the extractor keeps and
  line-level deduplication removes, since it repeats across the pages of a site);
* **exact duplicates** (the same page at a mirror URL) and **near duplicates** (the same article
  with a few words changed and a dateline added);
* **other languages** (German, French, Spanish prose) that language ID must drop;
* **PII** (emails, phone numbers, IP addresses) inside articles, to be masked;
* **link farms and listings** (navigation only), **stubs** ("page not found") and **toxic comment
  threads** that the Gopher rules and the harmful-content filter drop;
* one **damaged region** (bytes that are no record) per shard, which the reader skips and counts.

Every page carries the ``kind`` it was planted as, so a report can put "what went in" beside
"what the filters dropped". ``data`` imports no other unit: the caller passes the documents.

>>> pages = crawl_sample_pages(["A long English document ..."] * 3, CrawlSampleConfig(seed=1))  # doctest: +SKIP
>>> write_crawl_sample(pages, "crawl/", num_shards=2)                                          # doctest: +SKIP
{'shards': [...], 'pages': 3, 'damaged_regions': 2, 'planted': {'article': 3, 'exact_duplicate': 0, ...}}

Simplification: the chrome and the non-English texts are a small fixed set written for this
module (real boilerplate is far more varied); the quality classifier was trained on real pages,
not on these.
"""

from __future__ import annotations

import gzip
import html
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data.dedup import write_atomically

PAGE_KINDS = ("article", "exact_duplicate", "near_duplicate", "foreign", "pii", "link_farm", "stub", "toxic")

NAV = ("Home", "News", "Docs", "Tutorials", "Downloads", "Community", "Blog", "About", "Contact")
COOKIE = "We use cookies to improve your experience. By continuing to browse you accept our cookie policy."
FOOTER = ("Privacy policy", "Terms of use", "Imprint", "Sitemap", "RSS feed")
SITES = ("docs-mirror.example", "pyguide.example", "devnotes.example", "learncode.example")

# Other languages: a few sentences each, recombined into pages (language ID must drop them).
FOREIGN = {
    "de": (
        "Die Stadtbibliothek bleibt wegen Renovierungsarbeiten bis Ende des Monats geschlossen.",
        "Viele Besucher haben sich über die neuen Öffnungszeiten am Wochenende gefreut.",
        "Der Gemeinderat diskutiert seit Wochen über den Bau einer neuen Brücke über den Fluss.",
        "Im Sommer finden auf dem Marktplatz jeden Freitag kostenlose Konzerte statt.",
        "Die Schülerinnen und Schüler haben ein Theaterstück über die Geschichte der Stadt geschrieben.",
    ),
    "fr": (
        "La bibliothèque municipale restera fermée jusqu'à la fin du mois pour travaux.",
        "Les habitants du quartier se réunissent chaque semaine pour entretenir le jardin partagé.",
        "Le conseil municipal a voté un budget pour rénover les écoles primaires de la ville.",
        "Cet été, des concerts gratuits auront lieu sur la place du marché tous les vendredis.",
        "Les élèves ont écrit une pièce de théâtre sur l'histoire de leur village.",
    ),
    "es": (
        "La biblioteca municipal permanecerá cerrada hasta finales de mes por obras de renovación.",
        "Los vecinos del barrio se reúnen cada semana para cuidar el huerto comunitario.",
        "El ayuntamiento aprobó un presupuesto para reformar las escuelas de la ciudad.",
        "Este verano habrá conciertos gratuitos en la plaza del mercado todos los viernes.",
        "Los estudiantes escribieron una obra de teatro sobre la historia de su pueblo.",
    ),
}
TOXIC = (
    "you are a stupid idiot and nobody wants you here",
    "shut up you worthless moron, what a dumb pathetic loser",
    "this is the dumbest crap i have ever read, you idiots",
    "go away you stupid jerk, everyone hates your garbage posts",
)
PII_LINES = (
    "Questions about this page? Write to {user}@example.org or call {phone}.",
    "The mirror is served from {ip}; report problems to webmaster-{user}@example.net.",
)


@dataclass(frozen=True)
class CrawlSampleConfig:
    """How many pages of each kind to plant, as fractions of the articles."""

    exact_duplicate_fraction: float = 0.08  # mirrors of an article at another URL, byte for byte
    near_duplicate_fraction: float = 0.08  # an article with a few words changed and a dateline
    foreign_fraction: float = 0.08  # German, French and Spanish pages
    pii_fraction: float = 0.15  # articles with an email, a phone number or an IP address inside
    link_farm_fraction: float = 0.05  # pages of links and listings only
    stub_fraction: float = 0.03  # "page not found" and empty category pages
    toxic_fraction: float = 0.03  # comment threads full of insults
    max_words: int = 600  # articles longer than this are cut at a paragraph boundary
    seed: int = 0  # which pages get duplicated, edited, ...

    def __post_init__(self) -> None:
        for name in (f for f in self.__dataclass_fields__ if f.endswith("_fraction")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if isinstance(self.max_words, bool) or not isinstance(self.max_words, int) or self.max_words < 1:
            raise ValueError(f"max_words must be a positive integer, got {self.max_words!r}")


@dataclass(frozen=True)
class SamplePage:
    url: str
    html: str
    kind: str  # one of PAGE_KINDS


def _links(rng: random.Random, site: str, words: Sequence[str], count: int) -> str:
    items = []
    for _ in range(count):
        label = " ".join(rng.choice(words) for _ in range(rng.randint(2, 4))).title()
        items.append(
            f'<li><a href="https://{site}/{label.lower().replace(" ", "-")}">{html.escape(label)}</a></li>'
        )
    return "<ul>" + "".join(items) + "</ul>"


def _page(title: str, body: str, site: str, words: Sequence[str], lang: str = "en") -> str:
    """An HTML page: navigation, cookie banner, the body, related links, footer. The related links
    depend on the site and the title only, so a reprint of an article keeps its page's chrome."""
    rng = random.Random(f"{site}|{title}")
    nav = "".join(f'<a href="https://{site}/{n.lower()}">{n}</a> ' for n in NAV) if lang == "en" else ""
    chrome_top = (
        f"<header><nav>{nav}</nav><div class='cookie'>{COOKIE}</div></header>" if lang == "en" else ""
    )
    related = f"<aside><h3>Related pages</h3>{_links(rng, site, words, 5)}</aside>" if lang == "en" else ""
    footer = " | ".join(f'<a href="https://{site}/{f.lower().replace(" ", "-")}">{f}</a>' for f in FOOTER)
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"</head><body>{chrome_top}<main><h1>{html.escape(title)}</h1>{body}</main>{related}"
        f"<footer>{footer} &copy; 2024 {site}</footer></body></html>"
    )


def _paragraphs(document: str, max_words: int) -> list[str]:
    """The document's paragraphs (blank-line separated), cut after ``max_words`` words."""
    kept, total = [], 0
    for paragraph in (p.strip() for p in document.split("\n\n")):
        if paragraph and total < max_words:
            kept.append(paragraph)
            total += len(paragraph.split())
    return kept


def _article_body(paragraphs: Sequence[str]) -> str:
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)


def _near_duplicate(paragraphs: list[str], rng: random.Random) -> list[str]:
    """A copy with one word changed in a paragraph and a dateline added (Jaccard stays high)."""
    edited = list(paragraphs)
    i = rng.randrange(len(edited))
    words = edited[i].split()
    words[rng.randrange(len(words))] = rng.choice(("revised", "updated", "edited"))
    edited[i] = " ".join(words)
    return [f"Updated on 2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}.", *edited]


def _pii_line(rng: random.Random) -> str:
    template = rng.choice(PII_LINES)
    phone = f"({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    ip = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return template.format(user=f"user{rng.randint(1, 999)}", phone=phone, ip=ip)


def _extra_page(kind: str, index: int, rng: random.Random, words: Sequence[str]) -> SamplePage:
    """A page of a kind not made from an article: foreign, link_farm, stub or toxic."""
    site = rng.choice(SITES)
    if kind == "foreign":
        lang = rng.choice(sorted(FOREIGN))
        sentences = [rng.choice(FOREIGN[lang]) for _ in range(rng.randint(6, 12))]
        body = _article_body([" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)])
        return SamplePage(
            f"https://{lang}.{site}/seite-{index}",
            _page(f"{lang} {index}", body, site, words, lang),
            kind,
        )
    if kind == "link_farm":
        body = "".join(
            f"<h2>Category {c}</h2>{_links(rng, site, words, 12)}" for c in range(rng.randint(3, 6))
        )
        return SamplePage(f"https://{site}/links/{index}", _page("Best links", body, site, words), kind)
    if kind == "stub":
        body = rng.choice(("<p>404: page not found.</p>", "<p>No posts in this category yet.</p>"))
        return SamplePage(f"https://{site}/missing/{index}", _page("Not found", body, site, words), kind)
    comments = [f"<p>{rng.choice(TOXIC)}</p>" for _ in range(rng.randint(4, 8))]
    return SamplePage(
        f"https://{site}/comments/{index}", _page("Comments", "".join(comments), site, words), kind
    )


def _counts(num_articles: int, config: CrawlSampleConfig) -> dict[str, int]:
    return {
        kind: round(num_articles * getattr(config, f"{kind}_fraction"))
        for kind in PAGE_KINDS
        if kind != "article"
    }


def crawl_sample_pages(documents: Sequence[str], config: CrawlSampleConfig) -> list[SamplePage]:
    """Every document as an article page plus the planted pages of ``config``, shuffled."""
    rng = random.Random(config.seed)
    words = sorted({w for d in documents[:50] for w in d.split() if w.isalpha() and 3 < len(w) < 10}) or [
        "page"
    ]
    articles = [_paragraphs(d, config.max_words) for d in documents]
    articles = [a for a in articles if a]
    counts = _counts(len(articles), config)
    pii_articles = set(rng.sample(range(len(articles)), min(counts["pii"], len(articles))))
    pages, originals = [], []
    for i, paragraphs in enumerate(articles):
        kind = "article"
        if i in pii_articles:
            paragraphs = [*paragraphs, _pii_line(rng)]
            kind = "pii"
        site = SITES[i % len(SITES)]
        page = SamplePage(
            f"https://{site}/doc/{i}",
            _page(paragraphs[0][:60], _article_body(paragraphs), site, words),
            kind,
        )
        pages.append(page)
        originals.append((page, paragraphs, site))
    for j, (page, _, _) in enumerate(rng.sample(originals, min(counts["exact_duplicate"], len(originals)))):
        pages.append(SamplePage(f"https://mirror{j}.example/copy/{j}", page.html, "exact_duplicate"))
    for j, (_, paragraphs, site) in enumerate(
        rng.sample(originals, min(counts["near_duplicate"], len(originals)))
    ):
        body = _article_body(_near_duplicate(paragraphs, rng))
        pages.append(
            SamplePage(
                f"https://{site}/v2/{j}", _page(paragraphs[0][:60], body, site, words), "near_duplicate"
            )
        )
    for kind in ("foreign", "link_farm", "stub", "toxic"):
        pages += [_extra_page(kind, j, rng, words) for j in range(counts[kind])]
    rng.shuffle(pages)
    return pages


def warc_record(record_type: str, block: bytes, url: str | None, content_type: str) -> bytes:
    """One WARC/1.0 record: header lines, a blank line, the block, ``\\r\\n\\r\\n``."""
    headers = {"WARC-Type": record_type, "WARC-Date": "2024-01-01T00:00:00Z"}
    headers["WARC-Record-ID"] = (
        f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{record_type}:{url}:{len(block)}')}>"
    )
    if url is not None:
        headers["WARC-Target-URI"] = url
    headers |= {"Content-Type": content_type, "Content-Length": str(len(block))}
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("utf-8") + block + b"\r\n\r\n"


def http_response(body: bytes, content_type: str = "text/html; charset=utf-8") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode("ascii") + body


def write_warc(path: str | Path, pages: Sequence[SamplePage], damaged: bool = False) -> Path:
    """A gzipped WARC of ``response`` records (one gzip member each, as Common Crawl writes them),
    after a ``warcinfo`` record; ``damaged`` puts a region of garbage bytes in the middle."""
    path = Path(path)
    info = b"software: data/crawl_sample.py\r\nformat: WARC File Format 1.0\r\n"
    records = [warc_record("warcinfo", info, None, "application/warc-fields")]
    for page in pages:
        block = http_response(page.html.encode("utf-8"))
        records.append(warc_record("response", block, page.url, "application/http; msgtype=response"))
    members = [gzip.compress(record, mtime=0) for record in records]
    if damaged:  # a cut-off download glued to another: bytes that are neither gzip nor WARC
        members.insert(len(members) // 2, bytes(random.Random(len(pages)).randrange(256) for _ in range(512)))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, members)
    return path


def write_crawl_sample(
    pages: Sequence[SamplePage], out_dir: str | Path, num_shards: int = 2, damaged: bool = True
) -> dict:
    """Deal ``pages`` round-robin into ``num_shards`` WARC files ``CC-SAMPLE-0000N.warc.gz`` (each
    with one damaged region when ``damaged``); returns the files and the planted counts per kind."""
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}")
    out = Path(out_dir)
    shards = [
        write_warc(out / f"CC-SAMPLE-{i:05d}.warc.gz", pages[i::num_shards], damaged)
        for i in range(num_shards)
    ]
    planted = Counter(page.kind for page in pages)
    return {
        "shards": [str(s) for s in shards],
        "pages": len(pages),
        "damaged_regions": num_shards if damaged else 0,
        "planted": {kind: planted.get(kind, 0) for kind in PAGE_KINDS},
    }
