"""The pipeline's per-document filters (handout section 2, "Filtering Common Crawl"), datatrove style.

A filter is one top-level function that keeps a document -- returns it, maybe rewritten -- or drops
it with a reason -- returns ``Drop("language=de")``. The pipeline counts every drop by filter and
reason, so ``documents in == documents kept + all drops`` always balances::

    extract(document, config)  -> Document (with .text) | Drop("not html")
    language(batch, config)    -> [Document | Drop("language=fr"), ...]

Filters that run a model (language ID, harmful content, quality) take a whole *batch* of documents
and return one verdict per document, so the model is called once per batch instead of once per
document (the harmful-content model is ~15x faster that way; it also serves NSFW and toxicity in
one call when both use the offline default). ``build_filters`` lists the filters a
``FilterConfig`` switches on, in order; ``apply_filters`` runs a batch through them.

A filter that keeps a document but changes it (PII masking) says what it changed in
``document.changes`` (e.g. ``{"email": 2}``); the pipeline adds that to the filter's metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple


@dataclass(frozen=True)
class FilterConfig:
    """Settings of the per-document filters (stage 1 of the pipeline)."""

    languages: tuple[str, ...] = ("en",)  # keep documents identified as one of these ISO 639-1 codes
    min_language_score: float = 0.5  # ... with at least this fastText score
    language_model: str | None = None  # a lid.176.bin to use instead of the bundled lid.176.ftz
    gopher: bool = True  # apply the Gopher quality rules
    harmful: bool = True  # drop NSFW and toxic documents
    nsfw_threshold: float = 0.5  # drop when P(nsfw) >= this
    toxic_threshold: float = 0.5  # drop when P(toxic) >= this
    nsfw_model: str | None = None  # Dolma's jigsaw nsfw fastText .bin instead of the offline default
    toxic_model: str | None = None  # Dolma's jigsaw hatespeech fastText .bin instead of the offline default
    quality: bool = False  # drop documents the quality classifier calls "cc"
    min_quality_score: float = 0.5  # keep "wiki" documents with at least this score
    quality_model: str | None = None  # a trained quality model instead of the shipped default
    mask_pii: bool = True  # replace emails, phone numbers and IPs by placeholders
    max_page_bytes: int = 1 << 22  # WARC blocks longer than this (4 MiB) are cut (counted as truncated)
    batch_size: int = 64  # documents per call of a model-backed filter

    def __post_init__(self) -> None:
        for name in ("min_language_score", "nsfw_threshold", "toxic_threshold", "min_quality_score"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not self.languages:
            raise ValueError("languages must name at least one language")
        for name in ("max_page_bytes", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def fingerprint(self) -> str:
        """Digest of the settings that change stage 1's output (a resumed shard must match it)."""
        settings = {k: v for k, v in asdict(self).items() if k in _OUTPUT_SETTINGS}
        return hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=8).hexdigest()


# Every FilterConfig field except batch_size changes which documents are kept or their text.
_OUTPUT_SETTINGS = {f for f in FilterConfig.__dataclass_fields__ if f != "batch_size"}


@dataclass(frozen=True)
class Document:
    """One record on its way through the filters; ``text`` is filled in by the extract filter."""

    url: str
    record_type: str  # "response" (HTML in payload) or "conversion" (WET text in payload)
    payload: bytes
    content_type: str = ""  # HTTP Content-Type of a response record
    text: str = ""
    changes: dict[str, int] = field(default_factory=dict)  # what the last filter changed, by kind


class Drop(NamedTuple):
    """A filter's verdict to drop a document, with the reason that gets counted."""

    reason: str


Verdict = Document | Drop


class Filter(NamedTuple):
    """A named filter: ``apply(document, config)``, or ``apply(documents, config)`` when ``batched``."""

    name: str
    apply: Callable
    batched: bool = False


# ---- the filters, in pipeline order -----------------------------------------------------------
# Each imports its module when first called: `import data.filters` stays light, and a run that
# switches a filter off never loads that filter's libraries or models.


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip("\"' ")
    return None


def extract(document: Document, config: FilterConfig) -> Verdict:
    """WET text is decoded as UTF-8; a WARC response's HTML body is turned into text."""
    from data.extract import extract_text_from_html_bytes

    if document.record_type == "conversion":
        try:
            text = document.payload.decode("utf-8")
        except UnicodeDecodeError:
            return Drop("not utf-8")
    else:
        # "text/html; charset=utf-8" -> "text/html". An empty type proves nothing: extract anyway
        # and let the extractor decide.
        media_type = document.content_type.split(";")[0].strip().lower()
        if media_type and not ("html" in media_type or media_type.startswith("text/")):
            return Drop("not html")
        text = extract_text_from_html_bytes(document.payload, encoding_hint=_charset(document.content_type))
        if text is None:
            return Drop("binary or undecodable")
    if not text.strip():
        return Drop("empty")
    return replace(document, text=text)


def language(documents: Sequence[Document], config: FilterConfig) -> list[Verdict]:
    """Keep documents in one of ``config.languages`` with a confident enough fastText score."""
    from data.language import identify_language

    verdicts: list[Verdict] = []
    for document in documents:
        label, score = identify_language(document.text, model_path=config.language_model)
        if label not in config.languages:
            verdicts.append(Drop(f"language={label}"))
        elif score < config.min_language_score:
            verdicts.append(Drop("low language score"))
        else:
            verdicts.append(document)
    return verdicts


def gopher(document: Document, config: FilterConfig) -> Verdict:
    """The Gopher rules: the first one broken is the reason."""
    from data.gopher import gopher_quality_reason

    reason = gopher_quality_reason(document.text)
    return document if reason is None else Drop(reason)


def harmful(documents: Sequence[Document], config: FilterConfig) -> list[Verdict]:
    """Drop NSFW, then toxic documents: one model call per batch (one for both with the default)."""
    from data.harmful import harmful_probabilities, resolve_backend

    texts = [d.text for d in documents]
    nsfw_backend = resolve_backend(config.nsfw_model, "nsfw")
    toxic_backend = resolve_backend(config.toxic_model, "toxic")
    p_nsfw = harmful_probabilities(texts, nsfw_backend)
    # With the shared offline default, NSFW and toxic are one model's score: reuse it, not a second run.
    p_toxic = p_nsfw if toxic_backend is nsfw_backend else harmful_probabilities(texts, toxic_backend)
    verdicts: list[Verdict] = []
    for document, nsfw, toxic in zip(documents, p_nsfw, p_toxic, strict=True):
        if nsfw >= config.nsfw_threshold:  # one reason per document: NSFW is checked first
            verdicts.append(Drop("nsfw"))
        elif toxic >= config.toxic_threshold:
            verdicts.append(Drop("toxic"))
        else:
            verdicts.append(document)
    return verdicts


def quality(documents: Sequence[Document], config: FilterConfig) -> list[Verdict]:
    """Keep documents whose p(wiki) is at least ``config.min_quality_score``; a WARC page's links
    feed the classifier's link-density feature."""
    from data.quality import DEFAULT_MODEL_PATH, link_texts, load_cached_quality_model, quality_probabilities

    model = load_cached_quality_model(str(config.quality_model or DEFAULT_MODEL_PATH))
    links = [link_texts(d.payload) if d.record_type == "response" else frozenset() for d in documents]
    p_wiki = quality_probabilities([d.text for d in documents], model, links)
    return [d if p >= config.min_quality_score else Drop("low quality") for d, p in zip(documents, p_wiki)]


def pii(document: Document, config: FilterConfig) -> Verdict:
    """Mask emails, phone numbers and IP addresses (never drops)."""
    from data.pii import mask_pii

    text, counts = mask_pii(document.text)
    return replace(document, text=text, changes={kind: n for kind, n in counts.items() if n})


def load_models(config: FilterConfig) -> None:
    """Load the models the switched-on filters use (once per process), so that a filter's time per
    document does not include reading its model from disk."""
    from data.language import load_language_model

    load_language_model(config.language_model)
    if config.harmful:
        from data.harmful import harmful_probabilities, resolve_backend

        for backend, label in ((config.nsfw_model, "nsfw"), (config.toxic_model, "toxic")):
            harmful_probabilities(["warm up"], resolve_backend(backend, label))
    if config.quality:
        from data.quality import DEFAULT_MODEL_PATH, load_cached_quality_model

        load_cached_quality_model(str(config.quality_model or DEFAULT_MODEL_PATH))


def build_filters(config: FilterConfig) -> list[Filter]:
    """The per-document filters of stage 1, in order, as ``config`` switches them on."""
    switched = [
        (True, Filter("extract", extract)),
        (True, Filter("language", language, batched=True)),
        (config.gopher, Filter("gopher", gopher)),
        (config.harmful, Filter("harmful", harmful, batched=True)),
        (config.quality, Filter("quality", quality, batched=True)),
        (config.mask_pii, Filter("pii", pii)),
    ]
    return [step for on, step in switched if on]


@dataclass
class FilterCounts:
    """What the filters did to the documents that went through ``apply_filters``."""

    dropped: dict[str, Counter] = field(default_factory=dict)  # filter -> reason -> documents
    changed: dict[str, Counter] = field(default_factory=dict)  # filter -> kind -> count (e.g. pii)
    cpu_seconds: Counter = field(default_factory=Counter)  # filter -> CPU seconds


def apply_filters(
    documents: list[Document], filters: Sequence[Filter], config: FilterConfig, counts: FilterCounts
) -> list[Document]:
    """Run a batch through ``filters`` in order; return the kept documents, count the drops."""
    for step in filters:
        if not documents:
            break  # everything was dropped: later filters (and their models) are not called
        start = time.process_time()  # CPU time, not wall time: comparable across busy workers
        if step.batched:
            verdicts = step.apply(documents, config)
        else:
            verdicts = [step.apply(document, config) for document in documents]
        counts.cpu_seconds[step.name] += time.process_time() - start
        # Every input gets exactly one verdict, so in == kept + dropped holds filter by filter.
        documents = []
        for verdict in verdicts:
            if isinstance(verdict, Drop):
                counts.dropped.setdefault(step.name, Counter())[verdict.reason] += 1
            else:
                if verdict.changes:
                    counts.changed.setdefault(step.name, Counter()).update(verdict.changes)
                    verdict = replace(verdict, changes={})  # counted once: the next filter starts clean
                documents.append(verdict)
    return documents
