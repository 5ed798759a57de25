"""Benchmark our BPE tokenizer against Hugging Face tokenizers and tiktoken, in one run.

Training: our ``train_bpe`` vs HF's ``BpeTrainer`` (ByteLevel pre-tokenizer, same special token,
same corpus, same vocab size), each in a fresh subprocess; wall time of the training call and the
peak RSS of the whole process tree (sampled with psutil). Encoding: our tokenizer (``encode`` on
the whole text, ``encode_iterable`` over the file, ``encode_file`` with 1 and N processes) vs
tiktoken and HF tokenizers built from *our* vocabulary; MB/s of UTF-8 input, and a check that all
produce the same ids. Ratios are ours / HF (training time: lower is better; throughput: higher).

Examples (2-core CPU)::

    python scripts/bench_tokenizer.py                       # built-in 2 MB corpus, vocab 5000: ~1 min
    python scripts/bench_tokenizer.py --include-source --vocab-size 10000   # ~30 MB: a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ENDOFTEXT = "<|endoftext|>"

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


def run_measured(code: str, *args: str) -> tuple[dict, float]:
    """Run ``python -c code args`` and return (its JSON output, peak RSS in MB of its process
    tree, sampled every 20 ms)."""
    import psutil

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
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, total)
                time.sleep(0.02)
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(
            f"benchmark subprocess failed: {err.strip().splitlines()[-1] if err.strip() else '?'}"
        )
    return json.loads(out.strip().splitlines()[-1]), peak / 2**20


def throughput(fn, megabytes: float) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return megabytes / (time.perf_counter() - start), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vocab-size", type=int, default=5000, help="vocabulary size for both trainers")
    parser.add_argument(
        "--include-source", action="store_true", help="use the ~30 MB corpus (stdlib source too)"
    )
    parser.add_argument("--input", type=Path, default=None, help="benchmark on this UTF-8 text file instead")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="our worker processes")
    parser.add_argument(
        "--encode-mb", type=float, default=None, help="encode only the first N MB (default: all)"
    )
    args = parser.parse_args()

    import numpy as np
    import tiktoken
    import tokenizers

    from basics.tokenizer import Tokenizer

    if args.input is not None:
        corpus = args.input
    else:
        from basics.corpus import build_corpus

        corpus = build_corpus(include_source=args.include_source).train
    size_mb = corpus.stat().st_size / 1e6
    print(f"# corpus {corpus} ({size_mb:.1f} MB), vocab {args.vocab_size}, special {ENDOFTEXT!r}")
    print(
        f"# python {platform.python_version()}, tokenizers {tokenizers.__version__}, tiktoken {tiktoken.__version__},"
        f" {os.cpu_count()} CPUs, our processes {args.processes}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        ours_dir, hf_dir = Path(tmp, "ours"), Path(tmp, "hf")
        hf_dir.mkdir()
        ours, ours_rss = run_measured(
            _TRAIN_OURS, str(corpus), str(args.vocab_size), str(ours_dir), str(args.processes)
        )
        hf, hf_rss = run_measured(_TRAIN_HF, str(corpus), str(args.vocab_size), str(hf_dir))
        tokenizer = Tokenizer.load(ours_dir)
        rows = [
            (
                "train",
                f"ours train_bpe ({args.processes} proc)",
                f"{ours['seconds']:.1f} s",
                f"{ours_rss:.0f} MB",
                f"{ours['seconds'] / hf['seconds']:.2f}x time",
            ),
            ("train", "HF BpeTrainer (ByteLevel)", f"{hf['seconds']:.1f} s", f"{hf_rss:.0f} MB", "1.00x"),
        ]

        # Encoding, all with our vocabulary.
        text = corpus.read_text(encoding="utf-8")
        if args.encode_mb is not None:
            text = text[: int(args.encode_mb * 1e6)]
        sample = Path(tmp, "sample.txt")
        sample.write_text(text, encoding="utf-8")
        mb = len(text.encode("utf-8")) / 1e6
        docs = [d + ENDOFTEXT for d in text.split(ENDOFTEXT)]
        docs[-1] = docs[-1][: -len(ENDOFTEXT)]

        hf_tok = tokenizers.Tokenizer(
            tokenizers.models.BPE.from_file(str(ours_dir / "vocab.json"), str(ours_dir / "merges.txt"))
        )
        hf_tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        hf_tok.add_special_tokens([ENDOFTEXT])
        hf_batch, hf_ids = throughput(lambda: [i for e in hf_tok.encode_batch(docs) for i in e.ids], mb)
        hf_single, _ = throughput(lambda: hf_tok.encode(text).ids, mb)
        encoding = tokenizer.to_tiktoken()
        tt_single, tt_ids = throughput(lambda: encoding.encode(text, allowed_special="all"), mb)
        tt_batch, _ = throughput(
            lambda: encoding.encode_batch(docs, allowed_special="all", num_threads=os.cpu_count()), mb
        )

        def time_ours(run):
            fresh = Tokenizer.load(ours_dir)  # a cold pre-token cache for every measurement
            return throughput(lambda: run(fresh), mb)

        def iterate(t):
            with open(sample, encoding="utf-8") as f:
                return list(t.encode_iterable(f))

        whole, our_ids = time_ours(lambda t: t.encode(text))
        streamed, streamed_ids = time_ours(iterate)
        file_one, file_one_ids = time_ours(lambda t: t.encode_file(sample, num_processes=1))
        file_n, file_n_ids = time_ours(lambda t: t.encode_file(sample, num_processes=args.processes))
        same = (
            our_ids == tt_ids == hf_ids == streamed_ids
            and np.array_equal(file_one_ids, our_ids)
            and np.array_equal(file_n_ids, our_ids)
        )
        for name, speed in [
            ("ours encode (whole text)", whole),
            ("ours encode_iterable (file lines)", streamed),
            ("ours encode_file, 1 process", file_one),
            (f"ours encode_file, {args.processes} processes", file_n),
            ("tiktoken encode (1 thread)", tt_single),
            (f"tiktoken encode_batch ({os.cpu_count()} threads)", tt_batch),
            ("HF encode (whole text)", hf_single),
            ("HF encode_batch (documents)", hf_batch),
        ]:
            rows.append(("encode", name, f"{speed:.2f} MB/s", "", f"{speed / hf_batch:.2f}x speed"))

    header = ("task", "implementation", "time / speed", "peak RSS", "ours / HF")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(
        f"# encoded {mb:.1f} MB in {len(docs)} documents -> {len(our_ids)} tokens ({mb * 1e6 / len(our_ids):.2f} bytes/token)"
    )
    print(
        f"# ids identical across ours / tiktoken / HF / encode_iterable / encode_file: {'yes' if same else 'NO'}"
    )
    print(f"# trained vocab sizes: ours {ours['vocab']}, HF {hf['vocab']}")


if __name__ == "__main__":
    main()
