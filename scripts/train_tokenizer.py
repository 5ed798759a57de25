"""Train a byte-level BPE tokenizer and save it in GPT-2 format (vocab.json + merges.txt).

Default corpus: the built-in stdlib-docstrings corpus (about 2 MB; about 5 s at vocab 10,000 on
2 cores, plus about 20 s the very first time to build the corpus). Examples::

    python scripts/train_tokenizer.py --out-dir runs/tokenizer
    python scripts/train_tokenizer.py --include-source --vocab-size 32000 --out-dir runs/tok-src
    python scripts/train_tokenizer.py --input my_text.txt --validation my_val.txt --vocab-size 5000

Prints the training time, the vocabulary size, the longest tokens and the compression (UTF-8
bytes per token) on the validation text.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    input_file,
    output_dir,
    run_main,
)
from basics.tokenizer import Tokenizer, TokenizerTrainConfig, train_bpe

_VALIDATION_SAMPLE_CHARS = 1_000_000


def _short(token: bytes, limit: int = 32) -> str:
    text = repr(token.decode("utf-8", "replace"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out-dir", type=output_dir, default=Path("runs/tokenizer"), help="where to write the files"
    )
    parser.add_argument(
        "--input", type=input_file, default=None, help="train on this UTF-8 text file instead"
    )
    parser.add_argument(
        "--validation", type=input_file, default=None, help="measure compression on this file"
    )
    parser.add_argument(
        "--include-source", action="store_true", help="built-in corpus plus stdlib source (~30 MB)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_arguments(parser, TokenizerTrainConfig)
    # the path types check every path before the (long) training: a typo costs nothing, leaves nothing
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from_arguments(TokenizerTrainConfig, args)
    validation = args.validation
    if args.input is not None:
        train_path = args.input
    else:
        from basics.corpus import build_corpus

        paths = build_corpus(include_source=args.include_source)
        train_path, validation = paths.train, validation or paths.validation

    start = time.perf_counter()
    vocab, merges = train_bpe(
        train_path,
        config.vocab_size,
        list(config.special_tokens),
        num_processes=config.num_processes,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    tokenizer = Tokenizer(vocab, merges, list(config.special_tokens))
    files = tokenizer.save(args.out_dir)
    report(tokenizer, config, train_path, validation, seconds, files)
    return 0


def report(tokenizer, config, train_path: Path, validation: Path | None, seconds: float, files) -> None:
    """Print training time, vocabulary size, the longest tokens and the compression on held-out text."""
    if validation is not None:
        sample, sample_name = validation.read_text(encoding="utf-8"), f"validation ({validation})"
    else:
        with open(train_path, encoding="utf-8") as f:
            sample, sample_name = f.read(_VALIDATION_SAMPLE_CHARS), "first 1M chars of the training file"
    ids = tokenizer.encode(sample)
    vocab, specials = tokenizer.vocab, set(config.special_tokens)
    longest = sorted((t for t in vocab.values() if t.decode("utf-8", "replace") not in specials), key=len)
    short_of = ""
    if len(vocab) < config.vocab_size:  # the corpus ran out of pairs to merge
        short_of = f"; asked for {config.vocab_size}, but no pair was left to merge"
    rows = [
        ("corpus", f"{train_path} ({train_path.stat().st_size / 1e6:.1f} MB)"),
        ("train time", f"{seconds:.1f} s"),
        ("vocab size", f"{len(vocab)} ({len(tokenizer.merges)} merges, {len(specials)} special){short_of}"),
        ("compression", f"{len(sample.encode()) / max(1, len(ids)):.2f} bytes/token on {sample_name}"),
        ("longest tokens", ", ".join(_short(t) for t in reversed(longest[-5:]))),
        ("files", ", ".join(str(f) for f in files)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    run_main(main)
