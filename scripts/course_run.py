"""The whole course in one command: crawl -> filter -> tokenizer -> pretraining -> scaling -> SFT -> GRPO
-> evaluation, and a report card.

Chains the five units on one corpus (nanochat's ``speedrun.sh`` + report card is the model):

 1. crawl      a Common Crawl-like WARC sample built offline (``data.crawl_sample``: the built-in corpus
               as pages in real-looking chrome, exact and near duplicates, other languages, PII, link
               farms, stubs, toxic comments, a damaged region per shard), or your files (``--warc DIR``)
 2. filter     unit 4: ``data.pipeline`` -- extract, language, Gopher, harmful, quality, PII, then exact,
               MinHash and line deduplication; every drop counted (in = kept + dropped)
 3. tokenizer  unit 1: byte-level BPE trained on the filtered text
 4. tokenize   the pipeline's token shards, split into training and validation arrays
 5. pretrain   unit 1: ``basics.train.train`` on those arrays (loss curve, sample)
 6. scaling    unit 3: a small IsoFLOPs sweep on the same tokens (C = 6ND with N = all parameters, the
               learning rate and batch size of each width from ``scaling.sweep``'s rules), fitted with
               ``scaling.isoflops``
 7. sft        unit 5: supervised fine-tuning on the demo task (2-digit addition, R1-Zero format)
 8. grpo       unit 5: GRPO with the verifiable reward, from the SFT policy
 9. evaluate   the pretrained model's loss on every validation token; the base, SFT and GRPO policies
               on the same held-out problems (greedy and sampled, 95% Wilson intervals)

and writes ``OUT_DIR/report.md``: the filter funnel, tokenizer statistics, loss curves, the scaling fit,
alignment before/after with intervals, wall time and throughput per stage, machine and versions, and
every stage's outputs. Each stage lives in ``OUT_DIR/<stage>/`` with a ``stage.json`` written when it
finishes; a rerun skips a finished stage whose settings -- and whose upstream stages' settings -- are
unchanged, and redoes it (and everything downstream) otherwise. An interrupted stage continues where it
stopped (pipeline shards, training checkpoints).

    python scripts/course_run.py --out-dir runs/course --quick        # ~3 CPU-minutes on a 2-core machine
    python scripts/course_run.py --out-dir runs/course                # the cpu preset, bigger and longer
    python scripts/course_run.py --out-dir runs/course --preset gpu   # TinyStories-sized model, one GPU
    python scripts/course_run.py --out-dir runs/cc --warc CC_DIR      # real WARC/WET files instead
    python scripts/course_run.py --out-dir runs/course --quick --pretrain-steps 400   # reruns 5-9 only

Any field of the preset is a flag (``--help`` lists them). The alignment stages train the unit-5 demo
policy (a fresh byte-level model), not the pretrained one: addition is not in the crawl.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from basics.cli import ArgumentParser, add_config_arguments, config_from_arguments, output_dir, run_main

STAGE_FORMAT = 1  # bump when a stage's outputs change meaning: every stage reruns


@dataclass(frozen=True)
class CourseConfig:
    """One course run; every field is a flag, presets change the defaults."""

    warc: str | None = None  # folder of real WARC/WET files (None: build the offline sample)
    articles: int = 400  # corpus documents turned into article pages (offline sample)
    shards: int = 2  # WARC files of the offline sample
    crawl_seed: int = 0  # which documents, duplicates, edits
    languages: tuple[str, ...] = ("en",)  # languages the filter keeps
    quality: bool = True  # apply the quality classifier
    num_workers: int = 2  # filter processes
    vocab_size: int = 2048  # BPE vocabulary (with <|endoftext|>)
    validation_fraction: float = 0.1  # of each token shard's documents, held out
    context_length: int = 128  # pretraining context
    d_model: int = 128  # pretraining width
    num_layers: int = 4  # pretraining depth
    num_heads: int = 4  # attention heads
    batch_size: int = 32  # sequences per step (pretraining; the sweep sizes its own batches)
    pretrain_steps: int = 600  # optimizer steps of the pretraining run
    learning_rate: float = 3e-3  # peak learning rate (pretraining; the sweep's follows the width)
    compile: bool = False  # torch.compile the pretraining model (GPU)
    sweep_budgets: tuple[float, ...] = (1e11, 3e11)  # IsoFLOPs budgets C = 6 N D (FLOPs, N all parameters)
    sweep_d_models: tuple[int, ...] = (16, 32, 64)  # model widths per budget (2 layers each)
    sft_steps: int = 700  # SFT optimizer steps on the demo task
    grpo_steps: int = 40  # GRPO rollout batches
    eval_size: int = 300  # held-out problems for the alignment evaluation
    sample_tokens: int = 60  # tokens sampled from the pretrained model (0: none)
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 1  # torch CPU threads (1: tiny models gain little from more, and a busy machine loses)
    seed: int = 0  # model init and data order

    def __post_init__(self) -> None:
        counts = ("articles", "shards", "num_workers", "vocab_size", "context_length", "d_model")
        counts += ("num_layers", "num_heads", "batch_size", "pretrain_steps", "sft_steps", "grpo_steps")
        for name in (*counts, "eval_size", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.vocab_size < 257:
            raise ValueError(
                f"--vocab-size must be at least 257 (256 bytes + <|endoftext|>), got {self.vocab_size}"
            )
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"--validation-fraction must be in (0, 1), got {self.validation_fraction}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--learning-rate must be a positive number, got {self.learning_rate}")
        if len(set(self.sweep_budgets)) < 2 or any(
            not (math.isfinite(c) and c > 0) for c in self.sweep_budgets
        ):
            raise ValueError(
                f"--sweep-budgets needs 2 or more distinct positive budgets, got {self.sweep_budgets}"
            )
        if len(set(self.sweep_d_models)) < 2 or any(d < 8 or d % 8 for d in self.sweep_d_models):
            raise ValueError(
                f"--sweep-d-models needs 2 or more widths, multiples of 8, got {self.sweep_d_models}"
            )
        if self.d_model % self.num_heads:
            raise ValueError(f"--d-model {self.d_model} is not divisible by --num-heads {self.num_heads}")
        if self.sample_tokens < 0:
            raise ValueError(f"--sample-tokens must be >= 0, got {self.sample_tokens}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"--device must be auto, cpu or cuda[:N], got {self.device!r}")


PRESETS: dict[str, CourseConfig] = {
    # CI's end-to-end grader: every stage, as small as still says something (~2-3 minutes on 2 cores).
    "smoke": CourseConfig(
        articles=120, vocab_size=512, context_length=64, d_model=48, num_layers=2, num_heads=4,
        batch_size=16, pretrain_steps=120, sweep_budgets=(4e9, 1.2e10), sweep_d_models=(16, 32),
        sft_steps=150, grpo_steps=6, eval_size=100, sample_tokens=30,
    ),
    # `--quick`: the whole course in about 3 CPU-minutes (163 s measured: SFT 81, GRPO 32, sweep 23; the sweep
    # is ~53 CPU-s since it counts all parameters and sizes its batches per width: optimum inside at both budgets).
    "quick": CourseConfig(
        articles=240, vocab_size=1024, context_length=64, d_model=64, num_layers=2, num_heads=4,
        batch_size=16, pretrain_steps=300, sweep_budgets=(3e10, 6e10), sweep_d_models=(8, 16, 32),
        sft_steps=700, grpo_steps=40, eval_size=300, sample_tokens=40,
    ),
    "cpu": CourseConfig(),  # ~15 minutes on 2 cores
    # One GPU: the handout's TinyStories-sized model on the (real or sampled) crawl.
    "gpu": CourseConfig(
        articles=700, vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16,
        batch_size=64, pretrain_steps=2000, compile=True, sweep_budgets=(1e13, 3e13, 1e14),
        sweep_d_models=(64, 128, 256), sft_steps=1500, grpo_steps=100, eval_size=500, device="cuda",
    ),
}  # fmt: skip


# ---- stages: keys, skipping, records ------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]  # upstream stages (their keys are part of this one's)
    settings: Callable[[CourseConfig], dict]  # what this stage's output depends on
    run: Callable[[Course, Path], dict]  # does the work in its folder; returns the summary


def stage_key(name: str, settings: dict, upstream: dict[str, str]) -> str:
    """A digest of what a stage's output depends on: its settings and its upstream stages' keys."""
    payload = {"stage": name, "format": STAGE_FORMAT, "settings": settings, "upstream": upstream}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def finished_record(folder: Path, key: str) -> dict | None:
    """The stage's record if it finished with this key and its outputs are all still there."""
    record = read_json(folder / "stage.json")
    if record is None or record.get("key") != key:
        return None
    if not all((folder.parent / p).exists() for p in record.get("outputs", [])):
        return None
    return record


def prepare_folder(folder: Path, key: str) -> bool:
    """Make ``folder`` ready for a stage run with ``key``: keep it when an interrupted run with the
    same key left it (the stage resumes), else empty it (a stale output is never reused). Returns
    whether it was kept."""
    pending = read_json(folder / "pending.json")
    keep = pending is not None and pending.get("key") == key and not (folder / "stage.json").exists()
    if folder.exists() and not keep:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pending.json").write_text(json.dumps({"key": key}))
    return keep


def list_outputs(folder: Path) -> list[str]:
    """Files a stage wrote, relative to the run's folder (bookkeeping files left out)."""
    skip = {"stage.json", "pending.json"}
    return sorted(
        str(p.relative_to(folder.parent)) for p in folder.rglob("*") if p.is_file() and p.name not in skip
    )


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the pipeline's workers): on a shared
    machine a fairer measure of a stage's cost than its wall time."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stage_keys(config: CourseConfig, stages: tuple[Stage, ...] | None = None) -> dict[str, str]:
    """Every stage's key for ``config``, without running anything."""
    keys: dict[str, str] = {}
    for stage in STAGES if stages is None else stages:
        keys[stage.name] = stage_key(stage.name, stage.settings(config), {n: keys[n] for n in stage.needs})
    return keys


def run_stage(stage: Stage, course: Course, keys: dict[str, str]) -> dict:
    """Run ``stage`` unless it finished earlier with the same key (``keys`` holds its upstream stages'
    keys and gets its own); returns its record, with ``status`` "ran" or "skipped"."""
    upstream = {name: keys[name] for name in stage.needs}
    settings = stage.settings(course.config)
    key = stage_key(stage.name, settings, upstream)
    keys[stage.name] = key
    folder = course.out_dir / stage.name
    record = finished_record(folder, key)
    if record is not None:
        return record | {"status": "skipped"}
    resumed = prepare_folder(folder, key)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    summary = stage.run(course, folder)
    record = {
        "stage": stage.name,
        "key": key,
        "settings": settings,
        "upstream": upstream,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": cpu_seconds() - cpu_start,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "resumed": resumed,
        "summary": summary,
        "outputs": list_outputs(folder),
    }
    temporary = folder / "stage.json.tmp"
    temporary.write_text(json.dumps(record, indent=1, default=str))
    temporary.replace(folder / "stage.json")
    (folder / "pending.json").unlink(missing_ok=True)
    return record | {"status": "ran"}


@dataclass
class Course:
    config: CourseConfig
    out_dir: Path
    cache_dir: Path
    records: dict[str, dict] = dataclasses.field(default_factory=dict)  # finished stages so far

    def summary(self, stage: str) -> dict:
        return self.records[stage]["summary"]

    @property
    def device(self) -> str:
        import torch

        if self.config.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.config.device


def say(message: str) -> None:
    print(message, flush=True)


# ---- 1. crawl -------------------------------------------------------------------------------------


def crawl_settings(config: CourseConfig) -> dict:
    if config.warc is not None:
        from data.pipeline import find_input_files, input_signature

        return {"warc": {str(p.resolve()): input_signature(p) for p in find_input_files(config.warc)}}
    return {"articles": config.articles, "shards": config.shards, "seed": config.crawl_seed,
            "python": platform.python_version()}  # fmt: skip


def corpus_documents(cache_dir: Path, count: int, seed: int, min_words: int = 60) -> list[str]:
    """``count`` documents of the built-in corpus with at least ``min_words`` words, seeded choice."""
    import random

    from basics.corpus import build_corpus, split_documents

    corpus = build_corpus(cache_dir)
    documents = []
    for path in (corpus.train, corpus.validation):
        documents += [d.strip() for d in split_documents(path.read_text(encoding="utf-8"))]
    documents = [d for d in documents if len(d.split()) >= min_words]
    random.Random(seed).shuffle(documents)
    return documents[:count]


def run_crawl(course: Course, folder: Path) -> dict:
    from data.crawl_sample import CrawlSampleConfig, crawl_sample_pages, write_crawl_sample
    from data.pipeline import find_input_files

    config = course.config
    if config.warc is not None:
        files = [str(p.resolve()) for p in find_input_files(config.warc)]
        (folder / "inputs.json").write_text(json.dumps(files, indent=1))
        return {
            "source": f"--warc {config.warc}",
            "shards": files,
            "bytes": sum(Path(f).stat().st_size for f in files),
        }
    documents = corpus_documents(course.cache_dir, config.articles, config.crawl_seed)
    pages = crawl_sample_pages(documents, CrawlSampleConfig(seed=config.crawl_seed))
    written = write_crawl_sample(pages, folder, num_shards=config.shards)
    written["bytes"] = sum(Path(f).stat().st_size for f in written["shards"])
    written["source"] = f"offline sample of {len(documents)} built-in corpus documents"
    return written


# ---- 2. filter ------------------------------------------------------------------------------------


def filter_settings(config: CourseConfig) -> dict:
    return {"languages": list(config.languages), "quality": config.quality}


def pipeline_config(config: CourseConfig):
    from data.pipeline import PipelineConfig

    return PipelineConfig(
        languages=tuple(config.languages), quality=config.quality, num_workers=config.num_workers
    )


def run_filter(course: Course, folder: Path) -> dict:
    from data.pipeline import run_pipeline

    shards = course.summary("crawl")["shards"]
    report = run_pipeline(shards, folder, pipeline_config(course.config), progress=True)
    if report.failed:
        raise ValueError(
            f"the filter failed on {', '.join(report.failed)}: {next(iter(report.failed.values()))}"
        )
    if not report.balanced:  # a bug, not a user error: keep the traceback
        raise RuntimeError(
            f"filter funnel does not balance: {report.documents_in} in, {report.documents_out} kept"
        )
    if report.documents_out == 0:
        raise ValueError(
            "the filters kept no document: nothing to train on (check --languages and the input)"
        )
    summary = dataclasses.asdict(report)
    summary |= {"balanced": report.balanced, "docs_per_second_per_core": report.docs_per_second_per_core}
    return summary


# ---- 3. tokenizer and 4. tokenize -------------------------------------------------------------------


def filtered_texts(out_dir: Path) -> dict[str, list[str]]:
    texts = {}
    for path in sorted((out_dir / "filter" / "text").glob("*.jsonl")):
        with open(path, encoding="utf-8", errors="surrogatepass") as f:
            texts[path.name.removesuffix(".jsonl")] = [json.loads(line)["text"] for line in f]
    return texts


def run_tokenizer(course: Course, folder: Path) -> dict:
    from basics.bpe import train_bpe
    from basics.pretokenization import ENDOFTEXT
    from basics.tokenizer import Tokenizer

    documents = [d for docs in filtered_texts(course.out_dir).values() for d in docs]
    text_path = folder / "train_text.txt"
    text_path.write_text(ENDOFTEXT.join(documents), encoding="utf-8", errors="surrogatepass")
    start = time.perf_counter()
    vocab, merges = train_bpe(text_path, course.config.vocab_size, [ENDOFTEXT])
    seconds = time.perf_counter() - start
    tokenizer = Tokenizer(vocab, merges, [ENDOFTEXT])
    tokenizer.save(folder / "tokenizer")
    text_bytes = text_path.stat().st_size
    ids = tokenizer.encode(text_path.read_text(encoding="utf-8", errors="surrogatepass")[:200_000])
    longest = sorted((t for t in vocab.values() if t != ENDOFTEXT.encode()), key=len, reverse=True)[:8]
    text_path.unlink()  # the filtered text stays in filter/text/
    return {
        "vocab_size": len(vocab),
        "asked_vocab_size": course.config.vocab_size,
        "merges": len(merges),
        "documents": len(documents),
        "training_bytes": text_bytes,
        "train_seconds": seconds,
        "bytes_per_second": text_bytes / max(seconds, 1e-9),
        "bytes_per_token": len(ENDOFTEXT.join(documents)[:200_000].encode("utf-8", errors="surrogatepass"))
        / max(len(ids), 1),
        "longest_tokens": [t.decode("utf-8", errors="replace") for t in longest],
    }


def load_course_tokenizer(out_dir: Path):
    from basics.pretokenization import ENDOFTEXT
    from basics.tokenizer import Tokenizer

    folder = out_dir / "tokenizer" / "tokenizer"
    return Tokenizer.from_files(folder / "vocab.json", folder / "merges.txt", [ENDOFTEXT])


def run_tokenize(course: Course, folder: Path) -> dict:
    from basics.data import split_token_shards, tokenizer_fingerprint
    from basics.prepare import unigram_entropy
    from basics.pretokenization import ENDOFTEXT
    from data.pipeline import Tokenization, tokenize_shard

    tokenizer = load_course_tokenizer(course.out_dir)
    tokenization = Tokenization.of(
        tokenizer, tokenizer.special_ids[ENDOFTEXT], tokenizer_fingerprint(tokenizer)
    )
    start, tokens = time.perf_counter(), {}
    for text in sorted((course.out_dir / "filter" / "text").glob("*.jsonl")):
        shard = text.name.removesuffix(".jsonl")
        tokens[shard] = tokenize_shard(str(text), str(folder / "tokens" / f"{shard}.bin"), tokenization)
    seconds = time.perf_counter() - start
    split = split_token_shards(
        folder / "tokens", folder / "split", course.config.validation_fraction, tokenizer
    )
    import numpy as np

    train_tokens, val_tokens = (
        len(np.load(split.train, mmap_mode="r")),
        len(np.load(split.val, mmap_mode="r")),
    )
    return {
        "shards": tokens,
        "tokens": sum(tokens.values()),
        "seconds": seconds,
        "tokens_per_second": sum(tokens.values()) / max(seconds, 1e-9),
        "train": str(split.train.relative_to(course.out_dir)),
        "val": str(split.val.relative_to(course.out_dir)),
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        "vocab_size": split.vocab_size,
        "unigram_entropy": unigram_entropy(split.val, split.vocab_size),
    }


# ---- 5. pretrain and 6. scaling -------------------------------------------------------------------


def model_config(config: CourseConfig, vocab_size: int, d_model: int, num_layers: int, num_heads: int):
    from basics.model import ModelConfig

    return ModelConfig(
        vocab_size=vocab_size, context_length=config.context_length, d_model=d_model, num_layers=num_layers,
        num_heads=num_heads, norm_impl="torch", attention_impl="sdpa", rope_impl="complex",
    )  # fmt: skip


def train_config(course: Course, model, out_dir: Path, steps: int, evals: int = 5, **overrides):
    from basics.train import TrainConfig

    data = course.summary("tokenize")
    interval = max(1, steps // evals)
    return TrainConfig(
        model=model, train_data=str(course.out_dir / data["train"]), val_data=str(course.out_dir / data["val"]),
        out_dir=str(out_dir), batch_size=course.config.batch_size, max_steps=steps,
        learning_rate=course.config.learning_rate, min_learning_rate=course.config.learning_rate / 10,
        warmup_steps=max(1, steps // 20), eval_interval=interval, eval_batches=10, checkpoint_interval=interval,
        log_interval=max(1, min(25, steps // 10)), device=course.device, seed=course.config.seed,
        progress=False, resume_if_exists=True, **overrides,
    )  # fmt: skip


def pretrain_settings(config: CourseConfig) -> dict:
    names = ("context_length", "d_model", "num_layers", "num_heads", "batch_size", "pretrain_steps")
    names += ("learning_rate", "compile", "seed", "device", "sample_tokens")
    return {name: getattr(config, name) for name in names}


def run_pretrain(course: Course, folder: Path) -> dict:
    from basics.accounting import count_parameters
    from basics.train import plot_loss_curve, train

    config, data = course.config, course.summary("tokenize")
    model = model_config(config, data["vocab_size"], config.d_model, config.num_layers, config.num_heads)
    steps = config.pretrain_steps
    job = train_config(course, model, folder / "run", steps, compile=config.compile)

    def progress(metrics: dict) -> None:
        if "val_loss" in metrics:
            say(f"  pretrain step {metrics['step']}/{steps}: validation loss {metrics['val_loss']:.3f}")

    result = train(job, callback=progress)
    curve = plot_loss_curve(result.metrics_path, folder / "loss_curve.png")
    counts = count_parameters(model)
    return {
        "parameters": counts.total,
        "non_embedding_parameters": counts.non_embedding,
        "model": {
            k: getattr(model, k)
            for k in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads")
        },
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "val_perplexity": result.val_perplexity,
        "train_seconds": result.elapsed_s,
        "tokens_per_second": result.tokens_seen / max(result.elapsed_s, 1e-9),
        "checkpoint": str(Path(result.checkpoint).relative_to(course.out_dir)) if result.checkpoint else None,
        "loss_curve": str(curve.relative_to(course.out_dir)),
        "sample": sample_text(course, model, result.checkpoint),
    }


def sample_text(course: Course, model_config_, checkpoint) -> dict[str, str]:
    """A few continuations of the pretrained model (temperature 0.8, top-p 0.95, seeded)."""
    if course.config.sample_tokens == 0 or checkpoint is None:
        return {}
    import torch

    from basics.checkpoint import load_checkpoint
    from basics.generate import generate_text
    from basics.model import TransformerLM

    model = TransformerLM(model_config_)
    load_checkpoint(checkpoint, model)
    model.eval()
    tokenizer, samples = load_course_tokenizer(course.out_dir), {}
    for i, prompt in enumerate(("The ", "Return the ")):
        generator = torch.Generator().manual_seed(course.config.seed + i)
        samples[prompt] = generate_text(
            model,
            tokenizer,
            prompt,
            course.config.sample_tokens,
            temperature=0.8,
            top_p=0.95,
            generator=generator,
        )
    return samples


def scaling_settings(config: CourseConfig) -> dict:
    from scaling.sweep import SweepConfig

    names = ("context_length", "sweep_budgets", "sweep_d_models", "seed", "device")
    rules = ("base_learning_rate", "base_width", "lr_exponent", "max_learning_rate", "target_steps")
    rules += ("smallest_batch", "largest_batch")
    return {name: getattr(config, name) for name in names} | {
        "parameters": "all",
        "rules": {name: getattr(SweepConfig(), name) for name in rules},
    }


@dataclass(frozen=True)
class SweepPoint:
    """One IsoFLOPs point: its model, N (all parameters, as in the scaling unit's lab), and the
    scaling unit's per-width learning rate and per-size batch size."""

    model: object  # basics.model.ModelConfig
    parameters: int
    batch_size: int
    learning_rate: float
    steps: int


def sweep_point(config: CourseConfig, vocab_size: int, budget: float, d_model: int) -> SweepPoint:
    """The model of one IsoFLOPs point (2 layers, width ``d_model``), its parameters N (all of them:
    Hoffmann et al.'s count, which the scaling unit's lab found puts the optimum inside the sweep), the
    unit's learning-rate and batch rules (``scaling.sweep``), and the steps for D = C / (6 N) tokens;
    too few steps to say anything is an error."""
    from basics.accounting import count_parameters
    from scaling.sweep import SweepConfig, batch_size_for, learning_rate_for

    model = model_config(config, vocab_size, d_model, 2, max(1, d_model // 16))
    n, rules = count_parameters(model).total, SweepConfig()
    batch_size = batch_size_for(budget / (6 * n), config.context_length, rules)
    tokens_per_step = batch_size * config.context_length
    steps = round(budget / (6 * n * tokens_per_step))
    if steps < 10:
        raise ValueError(
            f"--sweep-budgets {budget:.3g} gives d_model {d_model} only {steps} steps of {tokens_per_step} tokens "
            "(10 or more needed): raise the budgets or lower --sweep-d-models"
        )
    return SweepPoint(model, n, batch_size, learning_rate_for(d_model, rules), steps)


def check_sweep(config: CourseConfig) -> None:
    """Every sweep point trains 10 or more steps (with the asked vocabulary; checked before any stage)."""
    for budget in config.sweep_budgets:
        for d_model in config.sweep_d_models:
            sweep_point(config, config.vocab_size, budget, d_model)


def sweep_run(course: Course, folder: Path, budget: float, d_model: int) -> dict:
    """One IsoFLOPs point: a 2-layer model of width ``d_model`` trained on D = C / (6 N) tokens with the
    scaling unit's learning rate and batch size for its size."""
    from basics.train import train

    name = f"C{budget:.3g}_d{d_model}"
    done = read_json(folder / "runs" / name / "result.json")
    if done is not None:
        return done
    vocab_size = course.summary("tokenize")["vocab_size"]
    point = sweep_point(course.config, vocab_size, budget, d_model)
    job = train_config(course, point.model, folder / "runs" / name, point.steps, evals=1)
    job = dataclasses.replace(job, batch_size=point.batch_size, learning_rate=point.learning_rate,
                              min_learning_rate=point.learning_rate / 10)  # fmt: skip
    result = train(job)
    record = {"name": name, "compute_budget": budget, "d_model": d_model, "parameters": point.parameters,
              "batch_size": point.batch_size, "learning_rate": point.learning_rate, "steps": point.steps,
              "tokens": point.steps * point.batch_size * course.config.context_length,
              "final_loss": result.val_loss, "seconds": result.elapsed_s}  # fmt: skip
    (folder / "runs" / name / "result.json").write_text(json.dumps(record))
    return record


def run_scaling(course: Course, folder: Path) -> dict:
    from scaling.isoflops import Run, edge_optima, fit_isoflops, plot_isoflops, save_runs

    config, records = course.config, []
    for budget in sorted(config.sweep_budgets):
        for d_model in sorted(config.sweep_d_models):
            records.append(sweep_run(course, folder, budget, d_model))
            say(f"  sweep C={budget:.3g} d_model={d_model}: loss {records[-1]['final_loss']:.3f} "
                f"({records[-1]['steps']} steps)")  # fmt: skip
    runs = [Run(float(r["parameters"]), float(r["compute_budget"]), float(r["final_loss"])) for r in records]
    save_runs(runs, folder / "runs.json")
    method = "parabola" if len(config.sweep_d_models) >= 3 else "minimum"
    fit = fit_isoflops(runs, method)
    pretrain = course.summary("pretrain")
    target = 6.0 * pretrain["parameters"] * pretrain["tokens_seen"]  # N = all parameters, as in the sweep
    plots = plot_isoflops(runs, fit, folder, extrapolate_to=max(target, max(config.sweep_budgets)))
    n_opt, d_opt = fit.predict(target)
    return {
        "runs": records,
        "method": method,
        "parameters_law": str(fit.parameters_law),
        "tokens_law": str(fit.tokens_law),
        "parameters_exponent": fit.parameters_law.exponent,
        "optima": [
            {"compute_budget": p.compute_budget, "parameters": p.parameters, "loss": p.loss}
            for p in fit.points
        ],
        "edge_optima": edge_optima(runs),
        "pretrain_compute": target,
        "pretrain_prediction": {"parameters": n_opt, "tokens": d_opt},
        "plots": [str(p.relative_to(course.out_dir)) for p in plots],
        "train_seconds": sum(r["seconds"] for r in records),
    }


# ---- 7. SFT, 8. GRPO, 9. evaluate ----------------------------------------------------------------

# The unit-5 CPU demo (scripts/sft.py): a byte-level model, a "sloppy annotator" who drops the final carry
# in 60% of the answer lines, a verifier that GRPO can learn from.
DEMO_MODEL = dict(vocab_size=257, context_length=128, d_model=96, num_layers=2, num_heads=4)


def task_data(config: CourseConfig):
    from alignment.tasks import TaskConfig, load_task

    return load_task(TaskConfig(sloppy_fraction=0.6, eval_size=config.eval_size, data_seed=config.seed))


def alignment_settings(config: CourseConfig, stage: str) -> dict:
    names = {"sft": ("sft_steps",), "grpo": ("grpo_steps",), "evaluate": ()}[stage]
    return {name: getattr(config, name) for name in (*names, "eval_size", "seed", "device")} | {
        "model": DEMO_MODEL
    }


def rl_evaluator(tokenizer, data):
    """Held-out accuracy, greedy and sampled at the rollout temperature, each with a 95% interval."""
    from alignment.evaluate import make_rl_evaluator
    from alignment.rewards import r1_zero_reward_fn

    prompts, answers = [p.prompt for p in data.heldout], [p.answer for p in data.heldout]
    return make_rl_evaluator(
        tokenizer, prompts, answers, r1_zero_reward_fn, max_new_tokens=60, temperature=1.0
    )


def greedy_evaluator(tokenizer, data):
    from alignment.evaluate import make_evaluator
    from alignment.rewards import r1_zero_reward_fn

    prompts, answers = [p.prompt for p in data.heldout], [p.answer for p in data.heldout]
    return make_evaluator(tokenizer, prompts, answers, r1_zero_reward_fn, max_new_tokens=60)


def accuracy_row(name: str, metrics: dict) -> dict:
    keys = (
        "accuracy",
        "ci_low",
        "ci_high",
        "sampled_accuracy",
        "sampled_ci_low",
        "sampled_ci_high",
        "format_rate",
    )
    return {"policy": name, **{k: metrics[f"heldout_{k}"] for k in keys}}


def demo_policy(course: Course):
    from alignment.policy import new_policy
    from basics.model import ModelConfig

    config = ModelConfig(**DEMO_MODEL, norm_impl="torch", attention_impl="sdpa", rope_impl="complex")
    return new_policy(config, course.device, seed=course.config.seed)


def run_sft(course: Course, folder: Path) -> dict:
    from alignment.policy import save_policy
    from alignment.report import save_curve
    from alignment.sft import SFTConfig, train_sft

    config = course.config
    model, tokenizer = demo_policy(course)
    data = task_data(config)
    every = max(1, config.sft_steps // 4)
    # One greedy evaluation, at the last step: the evaluate stage compares the policies.
    sft = SFTConfig(steps=config.sft_steps, eval_every=config.sft_steps, checkpoint_every=every,
                    min_learning_rate=3e-4, seed=config.seed)  # fmt: skip

    def progress(metrics: dict) -> None:
        if metrics["step"] % every == 0:
            say(f"  sft step {metrics['step']}/{config.sft_steps}: loss {metrics['loss']:.3f}")

    checkpoints = folder / "checkpoints"
    examples = [(p.prompt, p.solution) for p in data.train]
    result = train_sft(model, tokenizer, examples, sft, evaluate=greedy_evaluator(tokenizer, data),
                       callback=progress, checkpoint_dir=checkpoints,
                       resume=any(checkpoints.glob("checkpoint_*.pt")))  # fmt: skip
    save_policy(model, folder / "policy.pt", tokenizer=tokenizer)
    curve = save_curve(result.history, ["loss"], folder / "sft_curve.png", "SFT: training loss")
    return {
        "steps": result.steps,
        "examples": len(examples),
        "sloppy_fraction": 0.6,
        "train_seconds": result.elapsed_s,
        "examples_per_second": result.steps * sft.batch_size / max(result.elapsed_s, 1e-9),
        "heldout_accuracy": result.evaluation.get("heldout_accuracy"),
        "curve": str(curve.relative_to(course.out_dir)),
    }


def run_grpo(course: Course, folder: Path) -> dict:
    import torch

    from alignment.grpo import GRPOConfig, train_grpo
    from alignment.policy import load_policy, save_policy
    from alignment.report import save_curve
    from alignment.rewards import r1_zero_reward_fn

    config = course.config
    model, tokenizer = load_policy(course.out_dir / "sft" / "policy.pt", course.device, dtype=torch.float32)
    data = task_data(config)
    grpo = GRPOConfig(steps=config.grpo_steps, eval_every=0, checkpoint_every=max(1, config.grpo_steps // 4),
                      seed=config.seed)  # fmt: skip

    def progress(metrics: dict) -> None:
        say(f"  grpo step {metrics['step']}/{config.grpo_steps}: training reward {metrics['reward']:.3f}")

    checkpoints = folder / "checkpoints"
    questions = [(p.prompt, p.answer) for p in data.train]
    result = train_grpo(model, tokenizer, questions, r1_zero_reward_fn, grpo, callback=progress,
                        checkpoint_dir=checkpoints, resume=any(checkpoints.glob("checkpoint_*.pt")))  # fmt: skip
    save_policy(model, folder / "policy.pt", tokenizer=tokenizer)
    curve = save_curve(result.history, ["reward"], folder / "grpo_reward_curve.png", "GRPO: training reward")
    rollouts = result.steps * grpo.prompts_per_step * grpo.group_size
    return {
        "steps": result.steps,
        "rollouts": rollouts,
        "train_seconds": result.elapsed_s,
        "rollouts_per_second": rollouts / max(result.elapsed_s, 1e-9),
        "final_reward": result.history[-1]["reward"] if result.history else None,
        "curve": str(curve.relative_to(course.out_dir)),
    }


def evaluate_settings(config: CourseConfig) -> dict:
    return alignment_settings(config, "evaluate") | {"validation_fraction": config.validation_fraction}


def validation_loss(model, tokens, context_length: int, batch_size: int = 32) -> tuple[float, int]:
    """Mean next-token loss over every validation token, in consecutive non-overlapping windows."""
    import numpy as np
    import torch

    from basics.nn_utils import cross_entropy

    device = next(model.parameters()).device
    ids = np.asarray(tokens, dtype=np.int64)
    windows = (len(ids) - 1) // context_length
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, windows, batch_size):
            rows = range(start, min(start + batch_size, windows))
            x = torch.tensor(
                np.stack([ids[r * context_length : (r + 1) * context_length] for r in rows]), device=device
            )
            y = torch.tensor(
                np.stack([ids[r * context_length + 1 : (r + 1) * context_length + 1] for r in rows]),
                device=device,
            )
            total += float(cross_entropy(model(x).float(), y)) * y.numel()
            count += y.numel()
    if count == 0:
        raise ValueError(
            f"the validation split has fewer than {context_length + 1} tokens: raise --validation-fraction"
        )
    return total / count, count


def run_evaluate(course: Course, folder: Path) -> dict:
    import numpy as np
    import torch

    from alignment.policy import load_policy
    from basics.checkpoint import load_checkpoint
    from basics.model import ModelConfig, TransformerLM

    pretrain, tokenize = course.summary("pretrain"), course.summary("tokenize")
    model = TransformerLM(
        ModelConfig(**pretrain["model"], norm_impl="torch", attention_impl="sdpa", rope_impl="complex")
    )
    load_checkpoint(course.out_dir / pretrain["checkpoint"], model, map_location="cpu")
    model.to(course.device).eval()
    val = np.load(course.out_dir / tokenize["val"], mmap_mode="r")
    loss, tokens = validation_loss(model, val, pretrain["model"]["context_length"])
    data = task_data(course.config)
    rows = []
    for name, source in (("base (untrained)", None), ("SFT", "sft"), ("SFT + GRPO", "grpo")):
        if source is None:
            policy, tokenizer = demo_policy(course)
        else:
            policy, tokenizer = load_policy(
                course.out_dir / source / "policy.pt", course.device, dtype=torch.float32
            )
        rows.append(accuracy_row(name, rl_evaluator(tokenizer, data)(policy)))
        say(f"  {name}: held-out accuracy {rows[-1]['accuracy']:.3f}")
    (folder / "alignment.json").write_text(json.dumps(rows, indent=1))
    return {
        "val_loss": loss,
        "val_perplexity": math.exp(loss),
        "val_tokens": tokens,
        "unigram_entropy": tokenize["unigram_entropy"],
        "alignment": rows,
        "heldout_problems": len(data.heldout),
    }


STAGES = (
    Stage("crawl", (), crawl_settings, run_crawl),
    Stage("filter", ("crawl",), filter_settings, run_filter),
    Stage("tokenizer", ("filter",), lambda c: {"vocab_size": c.vocab_size}, run_tokenizer),
    Stage("tokenize", ("tokenizer",), lambda c: {"validation_fraction": c.validation_fraction}, run_tokenize),
    Stage("pretrain", ("tokenize",), pretrain_settings, run_pretrain),
    Stage("scaling", ("tokenize", "pretrain"), scaling_settings, run_scaling),
    Stage("sft", (), lambda c: alignment_settings(c, "sft"), run_sft),
    Stage("grpo", ("sft",), lambda c: alignment_settings(c, "grpo"), run_grpo),
    Stage("evaluate", ("pretrain", "tokenize", "grpo"), evaluate_settings, run_evaluate),
)


# ---- the report card ------------------------------------------------------------------------------


def throughput(name: str, s: dict) -> str:
    """One line per stage: how much it processed and how fast."""
    if name == "crawl":
        pages = f"{s['pages']:,} pages, " if s.get("pages") else ""
        return f"{pages}{len(s['shards'])} shards, {s['bytes'] / 1e6:.1f} MB"
    if name == "filter":
        return f"{s['documents_in']:,} docs; {s['docs_per_second_per_core']:,.0f} docs/s per core (filters)"
    if name == "tokenizer":
        return f"{s['training_bytes'] / 1e6:.2f} MB at {s['bytes_per_second'] / 1e6:.2f} MB/s"
    if name == "tokenize":
        return f"{s['tokens']:,} tokens at {s['tokens_per_second']:,.0f} tokens/s"
    if name == "pretrain":
        return f"{s['tokens_seen']:,} tokens at {s['tokens_per_second']:,.0f} tokens/s"
    if name == "scaling":
        tokens = sum(r["tokens"] for r in s["runs"])
        return f"{len(s['runs'])} runs, {tokens:,} tokens at {tokens / max(s['train_seconds'], 1e-9):,.0f} tokens/s"
    if name == "sft":
        return f"{s['steps']} steps, {s['examples_per_second']:,.0f} examples/s"
    if name == "grpo":
        return f"{s['rollouts']:,} rollouts at {s['rollouts_per_second']:,.0f} rollouts/s"
    return f"{s['val_tokens']:,} validation tokens; 3 policies x {s['heldout_problems']} problems"


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def stages_section(course: Course) -> list[str]:
    rows = []
    for stage in STAGES:
        record = course.records.get(stage.name)
        if record is None:
            rows.append([stage.name, "not run", "", "", "", ""])
            continue
        status = {"ran": "ran", "skipped": "skipped (done earlier)"}[record["status"]]
        status += ", resumed" if record.get("resumed") else ""
        seconds, cpu = f"{record['seconds']:.1f}", f"{record['cpu_seconds']:.1f}"
        work = throughput(stage.name, record["summary"])
        rows.append([stage.name, status, seconds, cpu, work, len(record["outputs"])])
    header = ["stage", "this run", "wall s", "CPU s", "throughput", "files"]
    return ["## Stages", "", *table(header, rows), ""]


def funnel_section(course: Course) -> list[str]:
    crawl, s = course.summary("crawl"), course.summary("filter")
    lines = ["## Data: the filter funnel (unit 4)", "", f"Input: {crawl['source']}.", ""]
    if "planted" in crawl:
        planted = ", ".join(f"{kind} {n}" for kind, n in crawl["planted"].items())
        lines += [f"Planted pages: {planted}; damaged regions: {crawl['damaged_regions']}.", ""]
    total = max(s["documents_in"], 1)
    rows = [["documents in", "", s["documents_in"], "100.0%"]]
    for name, reasons in s["dropped"].items():
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            rows.append([f"dropped: {name}", reason, count, f"{100 * count / total:.1f}%"])
    rows.append(["**kept**", "", s["documents_out"], f"{100 * s['documents_out'] / total:.1f}%"])
    dropped = sum(sum(r.values()) for r in s["dropped"].values())
    lines += table(["", "reason", "documents", "% of in"], rows)
    lines += ["", f"Balanced: {s['documents_in']:,} in = {s['documents_out']:,} kept + {dropped:,} dropped "
              f"({'yes' if s['balanced'] else 'NO'}). Bytes in {s['bytes_in']:,}, out {s['bytes_out']:,}."]  # fmt: skip
    for name, values in s["metrics"].items():
        lines.append(f"- {name}: " + ", ".join(f"{k} {v:,}" for k, v in values.items()))
    rows = []
    for name, seconds in s["filter_seconds"].items():
        docs = s["filter_documents"].get(name, 0)
        rows.append([name, docs, f"{seconds:.2f}", f"{docs / seconds:,.0f}" if seconds > 0 else "-"])
    lines += ["", *table(["filter", "documents", "CPU s", "docs/s per core"], rows), ""]
    return lines


def tokenizer_section(course: Course) -> list[str]:
    t, k = course.summary("tokenizer"), course.summary("tokenize")
    longest = ", ".join(f"`{token!r}`" for token in t["longest_tokens"][:6])
    return [
        "## Tokenizer (unit 1)",
        "",
        f"Byte-level BPE trained on the {t['documents']:,} kept documents ({t['training_bytes'] / 1e6:.2f} MB) "
        f"in {t['train_seconds']:.1f} s: vocabulary {t['vocab_size']:,} (asked {t['asked_vocab_size']:,}), "
        f"{t['merges']:,} merges, {t['bytes_per_token']:.2f} bytes per token. Longest tokens: {longest}.",
        "",
        f"Tokenized: {k['tokens']:,} tokens in {len(k['shards'])} shards; {k['train_tokens']:,} for training, "
        f"{k['val_tokens']:,} held out (the last {course.config.validation_fraction:.0%} of each shard's documents). "
        f"Unigram entropy of the held-out tokens: {k['unigram_entropy']:.3f} nats.",
        "",
    ]


def pretrain_section(course: Course) -> list[str]:
    p, e = course.summary("pretrain"), course.records.get("evaluate")
    m = p["model"]
    lines = [
        "## Pretraining (unit 1)",
        "",
        f"TransformerLM d_model {m['d_model']}, {m['num_layers']} layers, {m['num_heads']} heads, context "
        f"{m['context_length']}, vocabulary {m['vocab_size']:,}: {p['parameters']:,} parameters "
        f"({p['non_embedding_parameters']:,} non-embedding). {p['steps']} steps, {p['tokens_seen']:,} tokens "
        f"in {p['train_seconds']:.0f} s. Final training loss {p['train_loss']:.3f}, validation loss "
        f"{p['val_loss']:.3f} (perplexity {p['val_perplexity']:.1f}) against a unigram entropy of "
        f"{course.summary('tokenize')['unigram_entropy']:.3f}.",
        "",
        f"![loss curve]({p['loss_curve']})",
        "",
    ]
    if e is not None:
        s = e["summary"]
        lines += [f"Evaluation on every held-out token ({s['val_tokens']:,}): loss {s['val_loss']:.3f}, "
                  f"perplexity {s['val_perplexity']:.1f}.", ""]  # fmt: skip
    for prompt, text in p["sample"].items():
        lines += [f"Sample: `{prompt + text!r}`", ""]
    return lines


def scaling_section(course: Course) -> list[str]:
    s = course.summary("scaling")
    rows = [[f"{r['compute_budget']:.3g}", r["d_model"], f"{r['parameters']:,}", f"{r['tokens']:,}",
             f"{r['learning_rate']:.3g}", r["batch_size"], r["steps"], r["final_loss"]] for r in s["runs"]]  # fmt: skip
    prediction = s["pretrain_prediction"]
    lines = ["## Scaling: IsoFLOPs on the same tokens (unit 3)", ""]
    header = ["budget C", "d_model", "N (all parameters)", "tokens D", "learning rate", "batch", "steps"]
    lines += table([*header, "validation loss"], rows)
    lines += [
        "",
        "C = 6ND with N = all parameters (embeddings and output head included, as Hoffmann et al. count); "
        "each width trains at the scaling unit's learning rate and batch size for its size (`scaling.sweep`).",
        f"Fit ({s['method']} per budget): N_opt(C) = {s['parameters_law']}, D_opt(C) = {s['tokens_law']}. "
        f"At the pretraining run's compute ({s['pretrain_compute']:.2e} FLOPs) the law suggests "
        f"N = {prediction['parameters']:,.0f} on D = {prediction['tokens']:,.0f} tokens.",
    ]
    if s["edge_optima"]:
        budgets = ", ".join(f"{c:.3g}" for c in s["edge_optima"])
        lines.append(f"Warning: at {budgets} the best run is the smallest or largest model: widen the sweep.")
    lines += [
        "",
        "Two budgets and a handful of tiny models: read the exponent as a demonstration, not a law.",
        "",
    ]
    lines += [f"![{Path(p).stem}]({p})" for p in s["plots"]]
    return [*lines, ""]


def alignment_section(course: Course) -> list[str]:
    sft, grpo = course.summary("sft"), course.summary("grpo")
    lines = [
        "## Alignment on the demo task (unit 5)",
        "",
        f"2-digit addition in the R1-Zero format; SFT on {sft['examples']:,} worked solutions, "
        f"{sft['sloppy_fraction']:.0%} of them from a sloppy annotator who drops the final carry; then GRPO "
        f"with the verifiable reward ({grpo['rollouts']:,} rollouts). Held-out accuracy with 95% Wilson intervals "
        "(greedy, and sampled at temperature 1):",
        "",
    ]
    record = course.records.get("evaluate")
    if record is None:
        return [*lines[:-1], "(the evaluate stage has not finished yet)", ""]
    rows = record["summary"]["alignment"]
    header = ["policy", "greedy", "95% interval", "sampled", "95% interval", "format rate"]
    body = [[r["policy"], r["accuracy"], f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", r["sampled_accuracy"],
             f"[{r['sampled_ci_low']:.3f}, {r['sampled_ci_high']:.3f}]", r["format_rate"]] for r in rows]  # fmt: skip
    lines += table(header, body)
    return [*lines, "", f"![SFT]({sft['curve']}) ![GRPO]({grpo['curve']})", ""]


def machine_section(total_seconds: float, argv: list[str]) -> list[str]:
    import numpy
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    commit = "unknown"
    head = Path(__file__).resolve().parents[1] / ".git"
    try:
        import subprocess

        commit = subprocess.run(["git", "-C", str(head.parent), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or commit  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        pass
    import os

    return [
        "## Machine and versions",
        "",
        f"- {platform.platform()}, {os.cpu_count()} CPU cores, GPU: {device}",
        f"- python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}, commit {commit}",
        f"- command: `python scripts/course_run.py {' '.join(argv)}`",
        f"- wall time of this invocation: {total_seconds:.0f} s",
        "",
    ]


def outputs_section(course: Course) -> list[str]:
    lines = ["## Outputs per stage", ""]
    for name, record in course.records.items():
        files = record["outputs"]
        shown = ", ".join(f"`{f}`" for f in files[:12])
        more = f" and {len(files) - 12} more" if len(files) > 12 else ""
        lines.append(f"- **{name}** (`{name}/stage.json`): {shown}{more}")
    return [*lines, ""]


SECTIONS = {
    "filter": funnel_section,
    "tokenize": tokenizer_section,
    "pretrain": pretrain_section,
    "scaling": scaling_section,
    "evaluate": alignment_section,
}


def format_report(course: Course, total_seconds: float, argv: list[str]) -> str:
    """The report card as markdown: the stages so far, one section per finished unit, the machine."""
    stage_seconds = sum(r["seconds"] for r in course.records.values())
    lines = [
        "# Course run: report card",
        "",
        f"Output folder `{course.out_dir}`; {len(course.records)} of {len(STAGES)} stages finished; the stages' "
        f"own wall time adds up to {stage_seconds:.0f} s (this invocation: {total_seconds:.0f} s).",
        "",
        *stages_section(course),
    ]
    for stage, section in SECTIONS.items():
        if stage in course.records:
            lines += section(course)
    return "\n".join(lines + machine_section(total_seconds, argv) + outputs_section(course))


# ---- the command line -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out-dir", type=output_dir, required=True, help="where every stage and report.md go"
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="starting config (default: cpu)")
    parser.add_argument("--quick", action="store_true", help="the quick preset: about 3 CPU-minutes")
    parser.add_argument("--smoke", action="store_true", help="the smoke preset: the smallest end-to-end run")
    parser.add_argument(
        "--cache-dir", type=output_dir, help="built-in corpus cache (default: ~/.cache/lm-from-scratch)"
    )
    add_config_arguments(parser, CourseConfig)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> CourseConfig:
    chosen = [
        name
        for name, given in (("quick", args.quick), ("smoke", args.smoke), (args.preset, args.preset))
        if given
    ]
    if len(chosen) > 1:
        raise ValueError(f"choose one preset, got {' and '.join(chosen)}")
    config = config_from_arguments(CourseConfig, args, base=PRESETS[chosen[0] if chosen else "cpu"])
    if config.warc is not None and not Path(config.warc).is_dir():
        raise FileNotFoundError(f"--warc: no such directory: {config.warc}")
    return config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    config = build_config(args)
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise ValueError(f"--out-dir is a file: {args.out_dir}")
    stage_keys(config)  # reads the --warc folder: a missing or empty one fails before anything is written
    check_sweep(config)
    from basics.corpus import DEFAULT_CACHE_DIR

    course = Course(config, args.out_dir, args.cache_dir or DEFAULT_CACHE_DIR)
    import torch

    torch.set_num_threads(config.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    start, keys = time.perf_counter(), {}
    report = args.out_dir / "report.md"
    for number, stage in enumerate(STAGES, 1):
        say(f"[{number}/{len(STAGES)}] {stage.name} ...")
        record = run_stage(stage, course, keys)
        course.records[stage.name] = record
        done = "skipped: finished earlier with the same settings" if record["status"] == "skipped" else "done"
        say(f"[{number}/{len(STAGES)}] {stage.name}: {done} ({record['seconds']:.1f} s)")
        report.write_text(format_report(course, time.perf_counter() - start, argv))
    say(f"\nreport card: {report} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    run_main(main)
