"""Benchmark our BPE tokenizer against Hugging Face tokenizers and tiktoken, in one run.

Training: our ``train_bpe`` vs HF's ``BpeTrainer`` (ByteLevel pre-tokenizer, same special token,
same corpus, same vocab size), each in a fresh subprocess: wall time of the training call, CPU
seconds (user + system, all threads and child processes; on a shared machine the steadier
number), and peak memory of the process tree (PSS, so pages shared by forked workers count once).
Encoding: our tokenizer (``encode`` on the whole text, ``encode_iterable`` over the file,
``encode_file`` with 1 and N processes) vs tiktoken and HF tokenizers built from *our*
vocabulary: MB/s of UTF-8 input, and a check that all produce the same ids. Ratios are ours / HF
(training time: lower is better; throughput: higher is better).

Examples (2-core CPU; add --encode-mb 5 to shorten the encoding half)::

    python scripts/bench_tokenizer.py                       # built-in 2 MB corpus, vocab 5000: ~40 s
    python scripts/bench_tokenizer.py --include-source --vocab-size 10000 --min-mb 20   # 27 MB: ~5 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from basics.cli import ArgumentParser, input_file, positive_float, positive_int, run_main
from basics.pretokenization import ENDOFTEXT

_TRAIN_OURS = """
import json, sys, time
from basics.tokenizer import Tokenizer, train_bpe
path, vocab_size, out, processes = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
vocab, merges = train_bpe(path, vocab_size, ["<|endoftext|>"], num_processes=processes)
seconds = time.perf_counter() - start
Tokenizer(vocab, merges, ["<|endoftext|>"]).save(out)
print(json.dumps({"seconds": seconds, "vocab": len(vocab)}))
"""

_TRAIN_HF = """
import json, sys, time
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
path, vocab_size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
start = time.perf_counter()
tok.train([path], trainer)
seconds = time.perf_counter() - start
tok.model.save(out)
print(json.dumps({"seconds": seconds, "vocab": tok.get_vocab_size()}))
"""


def run_measured(code: str, *args: str) -> tuple[dict, float, float]:
    """Run ``python -c code args``; return (its JSON output, CPU seconds of it and its children,
    peak memory in MB of its whole process tree: PSS where the OS reports it, sampled every 50 ms)."""
    import psutil

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(process.pid)
            while not done.is_set():
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    try:  # PSS: shared pages (forked workers) split between the sharers
                        total += p.memory_full_info().pss
                    except (psutil.Error, AttributeError):
                        try:
                            total += p.memory_info().rss
                        except psutil.Error:
                            pass
                peak = max(peak, total)
                time.sleep(0.05)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(
            f"benchmark subprocess failed: {err.strip().splitlines()[-1] if err.strip() else '?'}"
        )
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return json.loads(out.strip().splitlines()[-1]), cpu, peak / 2**20


def _cpu_now() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process's threads and reaped children, result)."""
    cpu, start = _cpu_now(), time.perf_counter()
    result = fn()
    return time.perf_counter() - start, _cpu_now() - cpu, result


def benchmark_corpus(args: argparse.Namespace, tmp: str) -> Path:
    """The file to train on: --input, or the built-in corpus; repeated up to --min-mb if asked."""
    if args.input is not None:
        corpus = args.input
    else:
        from basics.corpus import build_corpus

        corpus = build_corpus(include_source=args.include_source).train
    size = corpus.stat().st_size
    if args.min_mb is None or size >= args.min_mb * 1e6:
        return corpus
    copies = math.ceil(args.min_mb * 1e6 / size)
    text = corpus.read_text(encoding="utf-8")
    grown = Path(tmp, f"corpus-x{copies}.txt")
    grown.write_text(ENDOFTEXT.join([text] * copies), encoding="utf-8")
    print(f"# --min-mb {args.min_mb}: the corpus below is {corpus} repeated {copies} times")
    return grown


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--vocab-size", type=positive_int, default=5000, help="vocabulary size for both trainers"
    )
    parser.add_argument(
        "--include-source", action="store_true", help="built-in corpus with stdlib source (~14 MB)"
    )
    parser.add_argument(
        "--input", type=input_file, default=None, help="benchmark on this UTF-8 text file instead"
    )
    parser.add_argument(
        "--min-mb", type=positive_float, default=None, help="repeat the corpus until it has N MB"
    )
    parser.add_argument(
        "--processes", type=positive_int, default=os.cpu_count() or 1, help="our worker processes"
    )
    parser.add_argument(
        "--encode-mb", type=positive_float, default=None, help="encode only the first N MB (default: all)"
    )
    args = parser.parse_args()

    import numpy as np
    import tiktoken
    import tokenizers

    from basics.tokenizer import Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        corpus = benchmark_corpus(args, tmp)
        size_mb = corpus.stat().st_size / 1e6
        print(f"# corpus {corpus} ({size_mb:.1f} MB), vocab {args.vocab_size}, special {ENDOFTEXT!r}")
        print(
            f"# python {platform.python_version()}, tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__},"
            f" {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), our processes {args.processes}"
        )
        ours_dir, hf_dir = Path(tmp, "ours"), Path(tmp, "hf")
        hf_dir.mkdir()
        start = time.perf_counter()
        ours, ours_cpu, ours_rss = run_measured(
            _TRAIN_OURS, str(corpus), str(args.vocab_size), str(ours_dir), str(args.processes)
        )
        hf, hf_cpu, hf_rss = run_measured(_TRAIN_HF, str(corpus), str(args.vocab_size), str(hf_dir))
        rows = [
            (
                "train",
                f"ours train_bpe ({args.processes} processes)",
                f"{ours['seconds']:.1f} s",
                f"{ours_cpu:.1f} s",
                f"{ours_rss:.0f} MB",
                f"{ours['seconds'] / hf['seconds']:.2f}x time",
                f"{ours_cpu / hf_cpu:.2f}x",
            ),
            (
                "train",
                "HF BpeTrainer (ByteLevel)",
                f"{hf['seconds']:.1f} s",
                f"{hf_cpu:.1f} s",
                f"{hf_rss:.0f} MB",
                "1.00x",
                "1.00x",
            ),
        ]

        # Encoding, all with our vocabulary; every measurement starts from a cold cache.
        text = corpus.read_text(encoding="utf-8")
        if args.encode_mb is not None:
            text = text[: int(args.encode_mb * 1e6)]
        sample = Path(tmp, "sample.txt")
        sample.write_text(text, encoding="utf-8")
        mb = len(text.encode("utf-8")) / 1e6
        docs = [d + ENDOFTEXT for d in text.split(ENDOFTEXT)]
        docs[-1] = docs[-1][: -len(ENDOFTEXT)]

        def hf_tokenizer():
            files = str(ours_dir / "vocab.json"), str(ours_dir / "merges.txt")
            tok = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(*files))
            tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
            tok.add_special_tokens([ENDOFTEXT])
            return tok

        def ours_then(run):
            fresh = Tokenizer.load(ours_dir)
            return lambda: run(fresh)

        def iterate(tok):
            with open(sample, encoding="utf-8") as f:
                return list(tok.encode_iterable(f))

        hf_batch_tok, hf_single_tok = hf_tokenizer(), hf_tokenizer()
        encoding = Tokenizer.load(ours_dir).to_tiktoken()
        cases = [
            ("ours encode (whole text)", ours_then(lambda t: t.encode(text))),
            ("ours encode_iterable (file lines)", ours_then(iterate)),
            ("ours encode_file, 1 process", ours_then(lambda t: t.encode_file(sample, num_processes=1))),
            (
                f"ours encode_file, {args.processes} processes",
                ours_then(lambda t: t.encode_file(sample, num_processes=args.processes)),
            ),
            ("tiktoken encode (1 thread)", lambda: encoding.encode(text, allowed_special="all")),
            (
                f"tiktoken encode_batch ({os.cpu_count()} threads)",
                lambda: [
                    i
                    for ids in encoding.encode_batch(docs, allowed_special="all", num_threads=os.cpu_count())
                    for i in ids
                ],
            ),
            ("HF encode (whole text)", lambda: hf_single_tok.encode(text).ids),
            (
                "HF encode_batch (documents)",
                lambda: [i for e in hf_batch_tok.encode_batch(docs) for i in e.ids],
            ),
        ]
        results = [(name, *measure(fn)) for name, fn in cases]
        reference = results[0][3]
        same = all(np.array_equal(np.asarray(ids), np.asarray(reference)) for *_, ids in results)
        hf_wall, hf_cpu_enc = results[-1][1], results[-1][2]
        for name, wall, cpu, _ in results:
            rows.append(
                (
                    "encode",
                    name,
                    f"{mb / wall:.2f} MB/s",
                    f"{mb / cpu:.2f} MB/CPU-s",
                    "",
                    f"{hf_wall / wall:.2f}x speed",
                    f"{hf_cpu_enc / cpu:.2f}x",
                )
            )

    header = ("task", "implementation", "wall", "CPU", "peak PSS", "ours / HF (wall)", "(CPU)")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(
        f"# encoded {mb:.1f} MB in {len(docs)} documents -> {len(reference)} tokens ({mb * 1e6 / len(reference):.2f} bytes/token)"
    )
    print(f"# ids identical across all eight encoders: {'yes' if same else 'NO'}")
    print(
        f"# trained vocab sizes: ours {ours['vocab']}, HF {hf['vocab']}; total {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    run_main(main)
