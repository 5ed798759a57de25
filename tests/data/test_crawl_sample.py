"""The offline Common Crawl-like sample (data.crawl_sample): its WARC files read back
record for record, every planted kind of page is there, and the pipeline meets each challenge."""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.extension

WORDS = (
    "the river valley was quiet in the early morning while farmers walked to their fields and children "
    "carried water from the old stone well near the church before school began with a song"
).split()


def english_documents(count: int, seed: int = 0) -> list[str]:
    """Distinct English-looking documents of three paragraphs (~150 words), seeded."""
    rng = random.Random(seed)
    documents = []
    for i in range(count):
        paragraphs = [
            f"Entry {i}. " + " ".join(rng.choice(WORDS) for _ in range(50)).capitalize() + "."
            for _ in range(3)
        ]
        documents.append("\n\n".join(paragraphs))
    return documents


def test_every_page_reads_back_and_each_damaged_region_is_counted(adapters, tmp_path):
    shards, planted, damaged = adapters.run_crawl_sample(
        english_documents(40), tmp_path / "crawl", num_shards=2
    )
    assert len(shards) == 2 and damaged == 2
    pages, skipped = 0, 0
    for shard in shards:
        records, skipped_regions = adapters.run_read_warc(shard, ("response",))
        pages += len(records)
        skipped += skipped_regions
    assert pages == sum(planted.values())
    assert skipped == damaged


def test_planted_kinds_follow_the_fractions(adapters, tmp_path):
    config = dict(exact_duplicate_fraction=0.1, near_duplicate_fraction=0.2, foreign_fraction=0.1)
    config |= dict(pii_fraction=0.5, link_farm_fraction=0.1, stub_fraction=0.1, toxic_fraction=0.1)
    _, planted, _ = adapters.run_crawl_sample(english_documents(40), tmp_path / "crawl", **config)
    assert planted["exact_duplicate"] == 4 and planted["near_duplicate"] == 8 and planted["foreign"] == 4
    assert planted["link_farm"] == planted["stub"] == planted["toxic"] == 4
    assert planted["pii"] == 20 and planted["article"] == 20  # PII goes into articles: 40 in all


def test_bad_fraction_is_rejected(adapters, tmp_path):
    with pytest.raises(ValueError, match="foreign_fraction"):
        adapters.run_crawl_sample(english_documents(3), tmp_path, foreign_fraction=1.5)


def test_the_pipeline_meets_every_challenge(adapters, tmp_path):
    """Other languages are dropped by language ID, duplicates by deduplication, PII is masked, the
    damaged regions are drops of the reader, and every document is accounted for."""
    shards, planted, _ = adapters.run_crawl_sample(english_documents(60), tmp_path / "crawl", num_shards=1)
    report = adapters.run_pipeline(shards, tmp_path / "out", num_workers=1)
    assert report["balanced"]
    dropped = {name: sum(reasons.values()) for name, reasons in report["dropped"].items()}
    assert dropped["read"] == 1
    assert dropped["language"] >= planted["foreign"]
    assert dropped["exact_dedup"] == planted["exact_duplicate"]
    assert dropped["minhash_dedup"] >= 1  # the near duplicates (one word changed, a dateline added)
    assert report["metrics"]["pii"]["email"] >= 1
    texts = [t for shard in adapters.read_pipeline_texts(tmp_path / "out").values() for t in shard]
    assert not any("@example.org" in t for t in texts)
