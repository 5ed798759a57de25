"""Adapters for the data graders: the only door from tests/data to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/data --adapters data=student_pkg.adapters`.
"""

from __future__ import annotations


# ---- primitives: reading, extraction, language id, pii, harmful, gopher, quality ----
def iter_warc_records(path, record_types=("response", "conversion")):
    """Good records of a WARC/WET file (gzip or not): objects with .url, .record_type,
    .headers (dict), .payload (bytes: HTTP body or WET text), .record_id."""
    from data.warc import iter_warc_records as impl

    return impl(path, record_types=record_types)


def run_read_warc(path, record_types=("response", "conversion"), **options):
    """``(list of good records, number of skipped malformed/truncated regions)``; options:
    max_block_bytes= (longer record blocks keep only their start; ``record.truncated`` is set)."""
    from data.warc import read_warc

    records, stats = read_warc(path, record_types=record_types, **options)
    records = list(records)
    return records, stats.skipped


def run_extract_text_from_html_bytes(html_bytes, **options):
    """Text or None; options: encoding_hint= (the charset from the HTTP header, may be wrong)."""
    from data.extract import extract_text_from_html_bytes

    return extract_text_from_html_bytes(html_bytes, **options)


def run_identify_language(text, **options):
    """``(label, score)``; options: model_path= (a user's fastText lid.176.bin)."""
    from data.language import identify_language

    return identify_language(text, **options)


def run_mask_emails(text):
    from data.pii import mask_emails

    return mask_emails(text)


def run_mask_phone_numbers(text):
    from data.pii import mask_phone_numbers

    return mask_phone_numbers(text)


def run_mask_ips(text):
    from data.pii import mask_ips

    return mask_ips(text)


def run_classify_nsfw(text, **options):
    """``("nsfw" | "non-nsfw", confidence in that label)``; options: threshold=, backend= (a
    fastText model path, or an object with harmful_probability(text) -> float)."""
    from data.harmful import classify_nsfw

    return classify_nsfw(text, **options)


def run_classify_toxic_speech(text, **options):
    """``("toxic" | "non-toxic", confidence in that label)``; options as for run_classify_nsfw."""
    from data.harmful import classify_toxic_speech

    return classify_toxic_speech(text, **options)


def run_harmful_probabilities(texts, backend=None):
    """P(harmful) of every text in one batched call (``backend`` as for run_classify_nsfw, with
    "nsfw" as the positive label of a fastText file)."""
    from data.harmful import harmful_probabilities, resolve_backend

    return harmful_probabilities(list(texts), resolve_backend(backend, "nsfw"))


def run_gopher_quality_filter(text):
    from data.gopher import gopher_quality_filter

    return gopher_quality_filter(text)


def run_gopher_quality_reason(text):
    """None when the text passes, else a short reason string."""
    from data.gopher import gopher_quality_reason

    return gopher_quality_reason(text)


def run_classify_quality(text, model=None):
    """``("wiki" | "cc", score)``; ``model`` None means the shipped default model."""
    from data.quality import classify_quality

    return classify_quality(text, model=model)


def run_classify_quality_page(html_bytes, model=None):
    """``run_classify_quality`` of a whole HTML page: its extracted text, with the page's links
    known to the classifier (the pipeline's view of a WARC page)."""
    from data.extract import extract_text_from_html_bytes
    from data.quality import classify_quality

    return classify_quality(extract_text_from_html_bytes(html_bytes) or "", model=model, html=html_bytes)


def run_quality_page_examples(html_bytes):
    """How a real page becomes training data for the default quality model: ``[(text, is_positive)]``
    (its article as a positive, blocks of its navigation and other chrome as negatives)."""
    from data.quality_pages import page_examples

    return [(e.text, e.positive) for e in page_examples("page.html", html_bytes)]


def run_train_quality_classifier(positives, negatives, seed=0):
    """A quality model trained on lists of positive ("wiki") and negative ("cc") texts."""
    from data.quality import train_quality_classifier

    return train_quality_classifier(positives, negatives, seed=seed)


def run_save_quality_model(model, path):
    from data.quality import save_quality_model

    save_quality_model(model, path)


def run_load_quality_model(path):
    from data.quality import load_quality_model

    return load_quality_model(path)


# (end of section: primitives: reading, extraction, language id, pii, harmful, gopher, quality)


# ---- dedup and pipeline ----
def run_exact_line_deduplication(input_files, output_directory):
    """Write each input file to ``output_directory`` (same name) without the lines that occur
    more than once anywhere in the inputs."""
    from data.dedup import exact_line_deduplication

    return exact_line_deduplication(input_files, output_directory)


def run_minhash_deduplication(
    input_files, num_hashes, num_bands, ngrams, jaccard_threshold, output_directory
):
    """Copy the input files to ``output_directory`` (same names), keeping one file per cluster of
    near-duplicates (verified Jaccard of word n-grams >= ``jaccard_threshold``)."""
    from data.minhash import minhash_deduplication

    return minhash_deduplication(
        input_files, num_hashes, num_bands, ngrams, jaccard_threshold, output_directory
    )


def run_normalize_text(text):
    """Lowercase, NFD, accents and punctuation removed, whitespace collapsed to single spaces."""
    from data.normalize import normalize_text

    return normalize_text(text)


def run_minhash_signatures(texts, num_hashes, ngrams, seed=0):
    """``(len(texts), num_hashes)`` integer array: the MinHash signature of each text's word
    n-grams (after normalisation), computed by the fast (vectorised) path from the raw texts."""
    from data.minhash import make_permutations, minhash_signatures
    from data.shingles import hash_shingles

    a, b = make_permutations(num_hashes, seed)
    return minhash_signatures(hash_shingles(texts, ngrams), a, b)


def run_minhash_signature_reference(text, num_hashes, ngrams, seed=0):
    """The same signature as ``run_minhash_signatures`` for one text, from the plain references
    (regex normalisation, string shingles, one hash and one permutation at a time)."""
    from data.minhash import make_permutations, minhash_signature_reference
    from data.normalize import normalize_text_reference
    from data.shingles import shingles, string_hash

    a, b = make_permutations(num_hashes, seed)
    hashes = [string_hash(s) for s in shingles(normalize_text_reference(text), ngrams)]
    return minhash_signature_reference(hashes, a.tolist(), b.tolist())


def run_lsh_candidate_pairs(signatures, num_bands):
    """Sorted pairs ``(i, j)``, i < j, of rows of ``signatures`` equal on all rows of some band."""
    from data.minhash import lsh_candidate_pairs

    return [tuple(map(int, pair)) for pair in lsh_candidate_pairs(signatures, num_bands)]


def run_pipeline(input_files, output_directory, **config):
    """Run the whole filtering pipeline; ``config`` keys are ``data.pipeline.PipelineConfig``
    fields (languages, gopher, harmful, executor, num_workers, ...) plus ``tokenizer_vocab`` and
    ``tokenizer_merges`` (GPT-2 style files: stage 3 writes token shards). Returns a dict with
    documents_in, documents_out, dropped ({filter: {reason: count}}), metrics, failed
    ({shard: error}), shards_resumed, rebuilt (shards redone because their input changed), tokens
    and balanced (in == out + dropped)."""
    import dataclasses

    from data.pipeline import PipelineConfig, Tokenization, run_pipeline

    vocab, merges = config.pop("tokenizer_vocab", None), config.pop("tokenizer_merges", None)
    tokenization = None
    if (vocab is None) != (merges is None):
        raise ValueError("give both tokenizer_vocab and tokenizer_merges, or neither")
    if vocab is not None:
        from basics.data import ENDOFTEXT, tokenizer_fingerprint
        from basics.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_files(vocab, merges, special_tokens=[ENDOFTEXT])
        eot = tokenizer.special_ids[ENDOFTEXT]
        tokenization = Tokenization.of(tokenizer, eot, tokenizer_fingerprint(tokenizer), (vocab, merges))
    if "languages" in config:
        config["languages"] = tuple(config["languages"])
    report = run_pipeline(input_files, output_directory, PipelineConfig(**config), tokenization)
    return dataclasses.asdict(report) | {"balanced": report.balanced}


def run_tasks(function, jobs, num_workers=2, executor="local"):
    """``function(*job)`` for every job on the pipeline's executor: a list of ``(job index, result,
    error message or None)`` in completion order."""
    from data.executors import ExecutorConfig, run_tasks

    return list(run_tasks(function, jobs, ExecutorConfig(executor=executor, num_workers=num_workers)))


def read_pipeline_texts(output_directory):
    """``{shard name: [final document texts, in order]}`` of a pipeline run."""
    import json
    from pathlib import Path

    folder = Path(output_directory) / "text"
    return {
        path.name.removesuffix(".jsonl"): [
            json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()
        ]
        for path in sorted(folder.glob("*.jsonl"))
    }


def read_pipeline_tokens(output_directory):
    """``{shard name: uint16 array}`` of a pipeline run with a tokenizer."""
    from pathlib import Path

    import numpy as np

    folder = Path(output_directory) / "tokens"
    return {
        path.name.removesuffix(".bin"): np.fromfile(path, dtype=np.uint16)
        for path in sorted(folder.glob("*.bin"))
    }


def split_pipeline_tokens(output_directory, cache_directory, validation_fraction):
    """``(train ids, validation ids)`` made from a pipeline run's token shards by the training job's
    loader (``scripts/train.py --data OUT/tokens``)."""
    from pathlib import Path

    import numpy as np

    from basics.data import split_token_shards

    shards = split_token_shards(Path(output_directory) / "tokens", cache_directory, validation_fraction)
    return np.load(shards.train), np.load(shards.val)


def block_pipeline_shard(output_directory, shard):
    """Make the stage-1 output of ``shard`` unwritable (a directory where the file goes), so
    that shard's task fails -- to test failure reporting and resumption."""
    from pathlib import Path

    (Path(output_directory) / "filtered" / f"{shard}.jsonl").mkdir(parents=True)


def unblock_pipeline_shard(output_directory, shard):
    from pathlib import Path

    (Path(output_directory) / "filtered" / f"{shard}.jsonl").rmdir()


# (end of section: dedup and pipeline)


def run_crawl_sample(documents, output_directory, num_shards=2, **config):
    """Write the offline Common Crawl-like sample of ``documents``; returns (shard paths, planted
    counts per page kind, damaged regions)."""
    from data.crawl_sample import CrawlSampleConfig, crawl_sample_pages, write_crawl_sample

    pages = crawl_sample_pages(documents, CrawlSampleConfig(**config))
    written = write_crawl_sample(pages, output_directory, num_shards=num_shards)
    return written["shards"], written["planted"], written["damaged_regions"]


def course_run_module():
    """scripts/course_run.py as a module (its stages, keys and config), for the course-run graders."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "course_run.py"
    spec = importlib.util.spec_from_file_location("course_run", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["course_run"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
