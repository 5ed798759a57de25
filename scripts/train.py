"""Train a Transformer language model.

With no arguments: build the built-in corpus (CPython docstrings), train a BPE tokenizer on it,
tokenize, train a small model on the CPU for a few minutes, print the validation loss against the
unigram baseline, save a loss curve and sample some text::

    python scripts/train.py                                   # the "cpu" preset
    python scripts/train.py --max-steps 200 --d-model 64      # any config field is a flag
    python scripts/train.py --data my_corpus.txt              # local text files
    python scripts/train.py --data train.npy val.npy          # pre-tokenized arrays
    python scripts/train.py --preset tinystories              # the course run (downloads TinyStories; GPU)
    python scripts/train.py --resume                          # continue the run in --out-dir
    torchrun --nproc_per_node 2 scripts/train.py --ddp bucketed --train-data a.npy --val-data b.npy

Run `python scripts/train.py --help` for every flag (defaults shown are the config classes'; the preset overrides them).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import systems  # noqa: F401  registers the unit-2 kernels behind --norm-impl triton, --attention-impl flash_*
from basics.cli import add_config_arguments, config_from_arguments, run_main
from basics.model import ModelConfig, TransformerLM
from basics.train import PRESET_DATASETS, PRESETS, TrainConfig, TrainingDiverged, plot_loss_curve, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="cpu", help="starting config (default: cpu)"
    )
    parser.add_argument(
        "--data", nargs="+", metavar="FILE", help="text files, or TRAIN.npy VAL.npy token arrays"
    )
    parser.add_argument(
        "--dataset", choices=["tinystories", "openwebtext"], help="download through `datasets`"
    )
    parser.add_argument("--tokenizer-dir", help="vocab.json/merges.txt for pre-tokenized data (for sampling)")
    parser.add_argument(
        "--cache-dir", help="cache for corpora, tokenizers, token arrays (default: ~/.cache/lm-from-scratch)"
    )
    parser.add_argument(
        "--prepare-only", action="store_true", help="build tokenizer and token arrays, then stop"
    )
    parser.add_argument("--sample-prompt", default="The ", help="prompt for the sample printed at the end")
    parser.add_argument(
        "--sample-tokens", type=int, default=60, help="tokens to sample at the end (0 = none)"
    )
    add_config_arguments(parser, ModelConfig)
    add_config_arguments(parser, TrainConfig)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> TrainConfig:
    base = PRESETS[args.preset]
    model = config_from_arguments(ModelConfig, args, base=base.model)
    return config_from_arguments(TrainConfig, args, base=dataclasses.replace(base, model=model))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    say = print if is_main else (lambda *a, **k: None)
    try:
        config = build_config(args)
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    tokenizer = None
    if args.data and all(f.endswith(".npy") for f in args.data):
        if len(args.data) != 2:
            print("error: --data with token arrays takes exactly TRAIN.npy VAL.npy", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, train_data=args.data[0], val_data=args.data[1])
    if not config.train_data:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            print(
                "error: under torchrun pass --train-data/--val-data (prepare them first with --prepare-only)",
                file=sys.stderr,
            )
            return 2
        from basics.corpus import DEFAULT_CACHE_DIR
        from basics.prepare import prepare_data, resolve_corpus, unigram_entropy

        cache_dir = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE_DIR

        dataset = args.dataset or (None if args.data else PRESET_DATASETS[args.preset])
        try:
            corpus = resolve_corpus(args.data, dataset, cache_dir)
        except (FileNotFoundError, ValueError, ImportError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        say(f"corpus: {corpus.train} ({corpus.train.stat().st_size / 1e6:.1f} MB)")
        prepared = prepare_data(config.model.vocab_size, corpus, cache_dir, progress=is_main)
        tokenizer = prepared.tokenizer
        config = dataclasses.replace(
            config, train_data=str(prepared.train_tokens), val_data=str(prepared.val_tokens)
        )
        baseline = unigram_entropy(prepared.val_tokens, config.model.vocab_size)
        say(
            f"tokenizer: {prepared.tokenizer_dir} | unigram entropy of validation tokens: {baseline:.3f} nats"
        )
        if args.prepare_only:
            say(f"train tokens: {prepared.train_tokens}\nvalidation tokens: {prepared.val_tokens}")
            return 0
    elif args.tokenizer_dir:
        from basics.tokenizer import Tokenizer

        directory = Path(args.tokenizer_dir)
        tokenizer = Tokenizer.from_files(
            directory / "vocab.json", directory / "merges.txt", ["<|endoftext|>"]
        )

    def report(metrics: dict) -> None:
        parts = [f"step {metrics['step']:>6}"]
        if "loss" in metrics:
            parts.append(
                f"loss {metrics['loss']:.4f}  lr {metrics['lr']:.2e}  grad-norm {metrics['grad_norm']:.3f}"
            )
        if "val_loss" in metrics:
            parts.append(f"val loss {metrics['val_loss']:.4f}  val ppl {metrics['val_perplexity']:.2f}")
        from tqdm.auto import tqdm

        tqdm.write(" | ".join(parts))

    if tokenizer is not None and is_main:
        tokenizer.save(Path(config.out_dir) / "tokenizer")  # the run directory is self-contained
    try:
        result = train(config, callback=report)
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from basics.checkpoint import latest_checkpoint

        last = latest_checkpoint(Path(config.out_dir) / "checkpoints")
        print(
            f"\ninterrupted; last checkpoint: {last}. Continue with the same flags plus --resume.",
            file=sys.stderr,
        )
        return 130
    if not is_main:
        return 0

    png = plot_loss_curve(result.metrics_path, Path(config.out_dir) / "loss_curve.png")
    say(f"\ndone: {result.steps} steps, {result.tokens_seen:,} tokens in {result.elapsed_s:.0f}s")
    say(f"final train loss {result.train_loss:.4f}")
    if result.val_loss is not None:
        say(f"final validation loss {result.val_loss:.4f} (perplexity {result.val_perplexity:.2f})")
    say(f"checkpoint: {result.checkpoint}\nmetrics: {result.metrics_path}\nloss curve: {png}")
    if tokenizer is not None and args.sample_tokens > 0 and result.checkpoint is not None:
        from basics.checkpoint import load_checkpoint
        from basics.generate import generate_text

        model = TransformerLM(config.model)
        load_checkpoint(result.checkpoint, model)
        model.eval()
        text = generate_text(
            model,
            tokenizer,
            args.sample_prompt,
            max_new_tokens=args.sample_tokens,
            temperature=0.8,
            top_p=0.95,
        )
        say(f"\nsample:\n{args.sample_prompt}{text}")
    return 0


if __name__ == "__main__":
    run_main(main)
