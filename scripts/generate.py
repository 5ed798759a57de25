"""Sample text from a trained model.

Give the run directory that scripts/train.py wrote (its latest checkpoint is used) or one checkpoint
file; the tokenizer is found beside the run or its token arrays, or given with --tokenizer-dir::

    python scripts/generate.py runs/cpu --prompt "The " --max-new-tokens 100
    python scripts/generate.py runs/cpu/checkpoints/checkpoint_00000500.pt --temperature 0 --num-samples 1
    python scripts/generate.py runs/tinystories --device cuda --top-p 0.9 --num-samples 4

Prints each sample and the decoding speed (tokens/s). Run with --help for every flag.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from basics.cli import ArgumentParser, add_config_arguments, config_from_arguments, input_dir, run_main
from basics.generate import (
    SampleConfig,
    check_tokenizer_fits,
    find_tokenizer_dir,
    generate_text,
    load_trained_model,
)
from basics.tokenizer import Tokenizer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory (out_dir of scripts/train.py) or a checkpoint file")
    parser.add_argument(
        "--tokenizer-dir",
        type=input_dir,
        help="directory with vocab.json and merges.txt (default: found from the run)",
    )
    add_config_arguments(parser, SampleConfig)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from_arguments(SampleConfig, args)
    model, run_config, checkpoint = load_trained_model(args.run, config.device)
    tokenizer_dir = (
        Path(args.tokenizer_dir) if args.tokenizer_dir else find_tokenizer_dir(run_config, args.run)
    )
    if tokenizer_dir is None:
        raise FileNotFoundError("no tokenizer found beside the run; pass --tokenizer-dir")
    tokenizer = Tokenizer.load(tokenizer_dir)
    check_tokenizer_fits(tokenizer, model.config.vocab_size)
    if "<|endoftext|>" not in tokenizer.special_tokens:
        tokenizer = Tokenizer(tokenizer.vocab, tokenizer.merges, ["<|endoftext|>", *tokenizer.special_tokens])
    print(f"checkpoint: {checkpoint}\ntokenizer: {tokenizer_dir}")
    print(f"model: {model.num_parameters():,} parameters, context {model.config.context_length}")
    generator = torch.Generator(device=config.device).manual_seed(config.seed)
    for i in range(config.num_samples):
        start = time.perf_counter()
        text = generate_text(
            model,
            tokenizer,
            config.prompt,
            config.max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            use_cache=config.use_cache,
            generator=generator,
        )
        elapsed = time.perf_counter() - start
        n = len(tokenizer.encode(text))
        print(f"\n--- sample {i + 1} ({n} tokens, {n / elapsed:.1f} tokens/s) ---\n{config.prompt}{text}")
    return 0


if __name__ == "__main__":
    run_main(main)
