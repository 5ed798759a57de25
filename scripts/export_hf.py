"""Export a trained model to the Hugging Face Llama format and check that transformers agrees.

Writes model.safetensors, config.json and the tokenizer files (vocab.json, merges.txt,
tokenizer_config.json) so that `transformers.LlamaForCausalLM.from_pretrained(OUT)` and
`AutoTokenizer.from_pretrained(OUT)` load them; then (unless --no-verify) loads them back and prints
the largest logit difference on random tokens::

    python scripts/export_hf.py runs/cpu --out-dir exports/cpu-llama
    python scripts/export_hf.py runs/cpu/checkpoints/checkpoint_00000500.pt --out-dir out --dtype bfloat16

Only the default architecture (RMSNorm, pre-norm, SwiGLU, RoPE) can be exported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from basics.cli import ArgumentParser, input_dir, output_dir, run_main
from basics.export import export_to_hf_llama
from basics.generate import check_tokenizer_fits, find_tokenizer_dir, load_trained_model
from basics.tokenizer import Tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def tokenizer_dir(text: str) -> str:
    """``--tokenizer-dir``: an existing folder, or ``none`` (export without a tokenizer)."""
    return text if text.lower() == "none" else str(input_dir(text))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run directory (out_dir of scripts/train.py) or a checkpoint file")
    parser.add_argument(
        "--out-dir", type=output_dir, required=True, help="directory to write the Hugging Face files into"
    )
    parser.add_argument(
        "--tokenizer-dir",
        type=tokenizer_dir,
        help="vocab.json/merges.txt (default: found from the run; none: skip)",
    )
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="weights dtype (default: float32)"
    )
    parser.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reload with transformers and compare logits",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.verify:
        import transformers  # before writing anything: a missing package is an error, not a half-done export
    model, run_config, checkpoint = load_trained_model(args.run)
    tokenizer_dir = find_tokenizer_dir(run_config, args.run)
    if args.tokenizer_dir is not None:  # "none" skips the tokenizer, as documented
        tokenizer_dir = None if args.tokenizer_dir.lower() == "none" else Path(args.tokenizer_dir)
    tokenizer = Tokenizer.load(tokenizer_dir) if tokenizer_dir is not None else None
    if tokenizer is not None:
        check_tokenizer_fits(tokenizer, model.config.vocab_size)
    out = export_to_hf_llama(model, tokenizer, args.out_dir, dtype=DTYPES[args.dtype])
    print(f"checkpoint: {checkpoint}\ntokenizer:  {tokenizer_dir or '(none: model files only)'}")
    print(f"wrote {out}:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name:<26} {path.stat().st_size:>12,} bytes")
    if not args.verify:
        return 0
    hf = transformers.LlamaForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
    context = model.config.context_length
    tokens = torch.randint(
        0, model.config.vocab_size, (2, context), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        diff = (hf(tokens).logits - model(tokens)).abs().max().item()
    tolerance = 1e-4 if args.dtype == "float32" else 0.1
    print(
        f"\ntransformers {transformers.__version__}: max |logits(HF) - logits(ours)| = {diff:.2e} on 2 x {context} tokens"
    )
    if diff > tolerance:
        print(f"error: difference above {tolerance}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
