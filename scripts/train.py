"""Train a Transformer language model.

With no arguments: build the built-in corpus (CPython docstrings), train a BPE tokenizer on it,
tokenize, train a small model on the CPU for a few minutes, print the validation loss against the
unigram baseline, save a loss curve and sample some text::

    python scripts/train.py                                   # the "cpu" preset
    python scripts/train.py --max-steps 200 --d-model 64      # any config field is a flag
    python scripts/train.py --data notes.txt                  # local text files
    python scripts/train.py --data train.npy val.npy          # pre-tokenized arrays
    python scripts/train.py --data OUT_DIR/tokens             # token shards of scripts/filter_cc.py
    python scripts/train.py --preset tinystories              # the course run (downloads TinyStories; GPU)
    python scripts/train.py --resume                          # continue the run in --out-dir
    torchrun --nproc_per_node 2 scripts/train.py --ddp bucketed --train-data a.npy --val-data b.npy
    torchrun --nproc_per_node 2 scripts/train.py --fsdp --train-data a.npy   # or --tp 2, --pp 2

A text file is split into documents at ``<|endoftext|>``, or at blank lines when it has none.
Run `python scripts/train.py --help` for every flag (defaults shown are the config classes'; the preset
overrides them).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import systems  # noqa: F401  registers the unit-2 kernels behind --norm-impl triton, --attention-impl flash_*
from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    input_dir,
    input_file,
    non_negative_int,
    output_dir,
    run_main,
)
from basics.model import ModelConfig, TransformerLM
from basics.presets import PRESET_DATASETS, PRESETS
from basics.train import TrainConfig, TrainingDiverged, TrainResult, plot_loss_curve, train
from systems.parallel_strategy import ParallelConfig, make_strategy
from systems.strategy import DataParallel, DataParallelConfig

IS_MAIN = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 prints


def say(*parts: object) -> None:
    if IS_MAIN:
        print(*parts)


def token_array(text: str) -> str:
    """``--train-data``/``--val-data``: an existing file, or "" for none."""
    return text if text == "" else str(input_file(text))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="cpu", help="starting config (default: cpu)"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        metavar="FILE",
        help="text files, TRAIN.npy VAL.npy token arrays, or a folder of token shards (filter_cc.py)",
    )
    parser.add_argument(
        "--dataset", choices=["tinystories", "openwebtext"], help="download through `datasets`"
    )
    parser.add_argument(
        "--tokenizer-dir", type=input_dir, help="vocab.json/merges.txt for pre-tokenized data (for sampling)"
    )
    parser.add_argument(
        "--cache-dir",
        type=output_dir,
        help="cache for corpora, tokenizers, token arrays (default: ~/.cache/lm-from-scratch)",
    )
    parser.add_argument(
        "--prepare-only", action="store_true", help="build tokenizer and token arrays, then stop"
    )
    parser.add_argument("--sample-prompt", default="The ", help="prompt for the sample printed at the end")
    parser.add_argument(
        "--sample-tokens", type=non_negative_int, default=60, help="tokens to sample at the end (0 = none)"
    )
    add_config_arguments(parser, ModelConfig)
    add_config_arguments(
        parser, TrainConfig, types={"train_data": token_array, "val_data": token_array, "out_dir": output_dir}
    )
    add_config_arguments(parser, DataParallelConfig)
    add_config_arguments(parser, ParallelConfig)
    return parser.parse_args(argv)


def build_configs(args: argparse.Namespace) -> tuple[TrainConfig, DataParallelConfig, ParallelConfig]:
    base = PRESETS[args.preset]
    model = config_from_arguments(ModelConfig, args, base=base.model)
    config = config_from_arguments(TrainConfig, args, base=dataclasses.replace(base, model=model))
    if args.data and all(f.endswith(".npy") for f in args.data):
        if len(args.data) != 2:
            raise ValueError("--data with token arrays takes exactly TRAIN.npy VAL.npy")
        config = dataclasses.replace(config, train_data=args.data[0], val_data=args.data[1])
    data_parallel, parallel = (
        config_from_arguments(DataParallelConfig, args),
        config_from_arguments(ParallelConfig, args),
    )
    if data_parallel.enabled and parallel.enabled:
        raise ValueError("--ddp/--shard-optimizer and --fsdp/--tp/--pp are alternatives: choose one")
    return config, data_parallel, parallel


def prepare(args: argparse.Namespace, config: TrainConfig):
    """Text -> tokenizer and token arrays (cached); returns the config pointing at them and the tokenizer."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "under torchrun pass --train-data/--val-data (prepare them first with --prepare-only)"
        )
    from basics.corpus import DEFAULT_CACHE_DIR
    from basics.prepare import prepare_data, resolve_corpus, unigram_entropy

    cache_dir = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE_DIR
    dataset = args.dataset or (None if args.data else PRESET_DATASETS[args.preset])
    corpus = resolve_corpus(args.data, dataset, cache_dir)
    for note in corpus.notes:
        say(f"corpus: {note}")
    say(f"corpus: {corpus.train} ({corpus.train.stat().st_size / 1e6:.1f} MB)")
    prepared = prepare_data(config.model.vocab_size, corpus, cache_dir, progress=IS_MAIN)
    trained = len(prepared.tokenizer.vocab)
    if trained < config.model.vocab_size:
        say(
            f"tokenizer: the corpus gave only {trained:,} tokens (asked for {config.model.vocab_size:,}: "
            f"no pair left to merge); the model keeps vocab_size {config.model.vocab_size:,} "
            f"(--vocab-size {trained} would match it)"
        )
    baseline = unigram_entropy(prepared.val_tokens, config.model.vocab_size)
    say(f"tokenizer: {prepared.tokenizer_dir} | unigram entropy of validation tokens: {baseline:.3f} nats")
    config = dataclasses.replace(
        config, train_data=str(prepared.train_tokens), val_data=str(prepared.val_tokens)
    )
    return config, prepared


def load_tokenizer(args: argparse.Namespace):
    if not args.tokenizer_dir:
        return None
    from basics.tokenizer import Tokenizer

    directory = Path(args.tokenizer_dir)
    return Tokenizer.from_files(directory / "vocab.json", directory / "merges.txt", ["<|endoftext|>"])


def use_token_shards(args: argparse.Namespace, config: TrainConfig, tokenizer):
    """``--data FOLDER`` of the data pipeline's token shards (``*.bin`` + sidecars): each shard's last
    5% of documents are held out for validation; the model's tokenizer (``--tokenizer-dir``, else
    the one the sidecars name) must be the one that wrote them."""
    from basics.corpus import DEFAULT_CACHE_DIR
    from basics.data import read_shard_sidecars, split_token_shards
    from basics.tokenizer import Tokenizer

    folder = Path(args.data[0])
    if tokenizer is None:
        files = read_shard_sidecars(folder)[0][1].get("tokenizer_files") or []
        if len(files) != 2:
            raise ValueError(f"{folder}: give --tokenizer-dir, the tokenizer that wrote these token shards")
        tokenizer = Tokenizer.from_files(files[0], files[1], ["<|endoftext|>"])
    cache_dir = Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE_DIR
    shards = split_token_shards(folder, cache_dir / "token-shards", 0.05, tokenizer)
    model = config.model
    if not hasattr(args, "vocab_size"):  # not given: the shards' vocabulary
        model = dataclasses.replace(model, vocab_size=shards.vocab_size)
    elif model.vocab_size < shards.vocab_size:
        raise ValueError(
            f"--vocab-size {model.vocab_size} is smaller than the shards' vocabulary ({shards.vocab_size})"
        )
    say(f"token shards: {folder} (tokenizer {shards.tokenizer}) -> {shards.train}, {shards.val}")
    return dataclasses.replace(
        config, model=model, train_data=str(shards.train), val_data=str(shards.val)
    ), tokenizer


def report(metrics: dict) -> None:
    from tqdm.auto import tqdm

    parts = [f"step {metrics['step']:>6}"]
    if "loss" in metrics:
        parts.append(
            f"loss {metrics['loss']:.4f}  lr {metrics['lr']:.2e}  grad-norm {metrics['grad_norm']:.3f}"
        )
    if "val_loss" in metrics:
        parts.append(f"val loss {metrics['val_loss']:.4f}  val ppl {metrics['val_perplexity']:.2f}")
    if "warning" in metrics:
        parts.append(f"warning: {metrics['warning']}")
    tqdm.write(" | ".join(parts))


def summarize(result: TrainResult, config: TrainConfig, tokenizer, args: argparse.Namespace) -> None:
    png = plot_loss_curve(result.metrics_path, Path(config.out_dir) / "loss_curve.png")
    say(f"\ndone: {result.steps} steps, {result.tokens_seen:,} tokens in {result.elapsed_s:.0f}s")
    say(f"final train loss {result.train_loss:.4f}")
    if result.val_loss is not None:
        say(f"final validation loss {result.val_loss:.4f} (perplexity {result.val_perplexity:.2f})")
    say(f"checkpoint: {result.checkpoint}\nmetrics: {result.metrics_path}\nloss curve: {png}")
    if tokenizer is None or args.sample_tokens == 0 or result.checkpoint is None:
        return
    from basics.checkpoint import load_checkpoint
    from basics.generate import generate_text

    model = TransformerLM(config.model)
    load_checkpoint(result.checkpoint, model)
    model.eval()
    text = generate_text(
        model, tokenizer, args.sample_prompt, max_new_tokens=args.sample_tokens, temperature=0.8, top_p=0.95
    )
    say(f"\nsample:\n{args.sample_prompt}{text}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config, data_parallel, parallel = build_configs(args)
    tokenizer = load_tokenizer(args)
    if args.data and len(args.data) == 1 and Path(args.data[0]).is_dir():
        config, tokenizer = use_token_shards(args, config, tokenizer)
    if not config.train_data:
        config, prepared = prepare(args, config)
        tokenizer = prepared.tokenizer
        if args.prepare_only:
            say(f"train tokens: {prepared.train_tokens}\nvalidation tokens: {prepared.val_tokens}")
            return 0
    strategy = None
    if data_parallel.enabled:
        strategy = DataParallel(data_parallel)
    elif parallel.enabled:
        strategy = make_strategy(parallel)
    try:
        result = train(config, callback=report, strategy=strategy)
    except TrainingDiverged:
        save_tokenizer(tokenizer, config)  # the checkpoints it names stay usable
        raise
    except KeyboardInterrupt:
        from basics.checkpoint import latest_checkpoint

        save_tokenizer(tokenizer, config)
        last = latest_checkpoint(Path(config.out_dir) / "checkpoints")
        print(
            f"\ninterrupted; last checkpoint: {last}. Continue with the same flags plus --resume.",
            file=sys.stderr,
        )
        return 130
    save_tokenizer(tokenizer, config)
    if IS_MAIN:
        summarize(result, config, tokenizer, args)
    return 0


def save_tokenizer(tokenizer, config: TrainConfig) -> None:
    """A copy of the tokenizer in the run directory makes it self-contained (generate, export)."""
    if IS_MAIN and tokenizer is not None:
        tokenizer.save(Path(config.out_dir) / "tokenizer")


if __name__ == "__main__":
    run_main(main)
