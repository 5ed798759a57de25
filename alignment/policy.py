"""Building, saving and loading the policy a stage trains: our ``TransformerLM`` with the byte tokenizer,
or a Hugging Face causal LM with its tokenizer.

Every stage script (SFT -> GRPO / DPO -> evaluation) passes a checkpoint to the next. Our checkpoints go
through unit 1's ``basics.checkpoint`` with the model's ``ModelConfig`` and the tokenizer's kind stored in
the config dict, so a later stage rebuilds the same model without flags:

    model, tokenizer = new_policy(ModelConfig(vocab_size=257, context_length=128, d_model=128, ...))
    save_policy(model, "runs/sft/policy.pt", step=300)
    model, tokenizer = load_policy("runs/sft/policy.pt")          # or load_policy("Qwen/Qwen2.5-Math-1.5B")

Simplification: our models use the byte-level tokenizer from ``alignment.tasks.byte_tokenizer`` (the
demo task is ASCII arithmetic); a BPE tokenizer directory can be given with ``tokenizer_dir``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from alignment.tasks import byte_tokenizer


def new_policy(
    model_config: Any, device: str | torch.device = "cpu", seed: int = 0
) -> tuple[torch.nn.Module, Any]:
    """A freshly initialised ``TransformerLM`` (for the byte tokenizer: vocab_size must be >= 257)."""
    from basics.model import TransformerLM

    if model_config.vocab_size < 257:
        raise ValueError(f"the byte tokenizer needs vocab_size >= 257, got {model_config.vocab_size}")
    torch.manual_seed(seed)
    model = TransformerLM.from_config(model_config, device=torch.device(device))
    return model, byte_tokenizer()


def save_policy(
    model: torch.nn.Module,
    path: str | Path,
    step: int = 0,
    tokenizer: Any = None,
    tokenizer_dir: str | None = None,
) -> None:
    """Save our model (with its config) via unit 1's checkpoint format to the file ``path``; an HF model
    and its ``tokenizer`` via ``save_pretrained`` to the directory ``path``."""
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(str(path))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))
        return
    from basics.checkpoint import save_checkpoint

    config = {"model": dataclasses.asdict(model.config), "tokenizer": tokenizer_dir or "bytes"}
    save_checkpoint(model, None, step, path, config=config)


def load_policy(
    source: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[torch.nn.Module, Any]:
    """Load (model, tokenizer) from one of our checkpoint files, or from an HF model name or directory."""
    path = Path(source)
    if path.is_file():
        from basics.checkpoint import load_checkpoint, read_checkpoint_config
        from basics.model import ModelConfig, TransformerLM

        config = read_checkpoint_config(path)
        if config and config.get("kind") == "reward_model":
            raise ValueError(f"{path} is a reward model, not a policy (load it with load_reward_model)")
        if not config or "model" not in config:
            raise ValueError(
                f"{path}: checkpoint has no model config; save it with alignment.policy.save_policy"
            )
        model = TransformerLM.from_config(
            ModelConfig.from_dict(config["model"]), device=torch.device(device), dtype=dtype
        )
        load_checkpoint(path, model, map_location=device)
        if config.get("tokenizer", "bytes") == "bytes":
            tokenizer = byte_tokenizer()
        else:
            from basics.tokenizer import Tokenizer

            tokenizer = Tokenizer.load(config["tokenizer"])
        return model.eval(), tokenizer
    if not path.is_dir() and (path.suffix == ".pt" or str(source).startswith((".", "/", "~"))):
        raise FileNotFoundError(f"no such policy checkpoint or model directory: {source}")
    return load_hf_policy(str(source), device, dtype)  # a local folder, or a hub name


def load_hf_policy(
    name_or_path: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[torch.nn.Module, Any]:
    """An HF causal LM and its tokenizer (a local directory, or a hub name when the machine is online)."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as error:
        raise FileNotFoundError(
            f"{name_or_path} is not a checkpoint file and transformers is not installed"
        ) from error
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        # A local folder must hold safetensors: a pickled pytorch_model.bin is refused, never unpickled.
        safe = True if Path(name_or_path).is_dir() else None
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype or "auto", use_safetensors=safe
        )
    except OSError as error:
        raise FileNotFoundError(
            f"cannot load a model from {name_or_path!r}: {str(error).splitlines()[0]}"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def load_any(
    source: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[torch.nn.Module, Any]:
    """(model, tokenizer) from anything this library writes: a policy file of the alignment stages, a
    pretraining run directory of ``scripts/train.py`` (or one of its checkpoints; the tokenizer is found
    beside the run), an exported or saved Hugging Face folder, or an HF hub name."""
    path = Path(source)
    if path.is_dir() and (path / "config.json").is_file():
        return load_hf_policy(str(path), device, dtype)
    is_run = path.is_dir() or (path.is_file() and "tokenizer" not in (_config_of(path) or {}))
    if not is_run:
        return load_policy(path, device, dtype)
    from basics.generate import find_tokenizer_dir, load_trained_model
    from basics.tokenizer import Tokenizer

    model, config, checkpoint = load_trained_model(path, device=str(device))
    run_dir = path if path.is_dir() else checkpoint.parent.parent
    tokenizer_dir = find_tokenizer_dir(config, run_dir)
    if tokenizer_dir is None:
        raise FileNotFoundError(f"no tokenizer (vocab.json, merges.txt) found beside the run {run_dir}")
    if dtype is not None:
        model = model.to(dtype)
    return model, Tokenizer.load(tokenizer_dir)


def _config_of(path: Path) -> dict[str, Any] | None:
    from basics.checkpoint import read_checkpoint_config

    return read_checkpoint_config(path)
