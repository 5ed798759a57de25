"""Checkpoints of a sharded model: one file per rank, or everything gathered into one plain file.

Two ways to save an :class:`systems.fsdp.FSDP` model and its optimizer (the optimizer holds state for
the shards only):

* **Sharded** (:func:`save_sharded_checkpoint`): every rank writes its own shards, its optimizer state
  and its RNG states, with no communication; ``checkpoint_00000100.rank1-of-2.pt`` and so on. Saving
  scales with the model (no rank ever holds it whole), but the files only load into a job with the
  same number of ranks.
* **Gathered** (:func:`save_gathered_checkpoint`): all ranks all-gather the full weights and the full
  AdamW moments, and rank 0 writes one ordinary ``basics.checkpoint`` file -- the same file a
  single-process run writes. It loads into a single process (``basics.checkpoint.load_checkpoint``),
  into DDP, or into FSDP on any number of ranks (:func:`load_gathered_checkpoint`, each rank keeping
  its slices): this is how a run changes layout.

Both use the unit-1 file format (atomic writes, ``torch.load(weights_only=True)``, RNG states).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from basics.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from systems.fsdp import FSDP

__all__ = [
    "sharded_checkpoint_path",
    "save_sharded_checkpoint",
    "load_sharded_checkpoint",
    "save_gathered_checkpoint",
    "load_gathered_checkpoint",
    "StateHolder",
]

_SHARD_NAME = re.compile(r"^checkpoint_(\d+)\.rank(\d+)-of-(\d+)\.pt$")


class StateHolder:
    """Something with a ``state_dict()``, for handing gathered dicts to ``save_checkpoint``."""

    def __init__(self, state: dict[str, Any]):
        self._state = state

    def state_dict(self) -> dict[str, Any]:
        return self._state


def sharded_checkpoint_path(directory: str | os.PathLike, iteration: int, rank: int, world_size: int) -> Path:
    """``directory/checkpoint_00000100.rank1-of-2.pt``: rank 1's shard of a 2-rank checkpoint."""
    return checkpoint_path(directory, iteration).with_suffix(f".rank{rank}-of-{world_size}.pt")


def save_sharded_checkpoint(
    fsdp: FSDP,
    optimizer: torch.optim.Optimizer,
    iteration: int,
    directory: str | os.PathLike,
    *,
    config: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Every rank writes its shards, optimizer state and RNG states; returns this rank's file."""
    path = sharded_checkpoint_path(directory, iteration, fsdp.rank, fsdp.world_size)
    layout = {"rank": fsdp.rank, "world_size": fsdp.world_size}
    save_checkpoint(
        fsdp.module, optimizer, iteration, path, config=config, extra={**(extra or {}), "fsdp": layout}
    )
    return path


def load_sharded_checkpoint(
    directory: str | os.PathLike,
    iteration: int,
    fsdp: FSDP,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    restore_rng: bool = True,
) -> int:
    """Load this rank's file of a sharded checkpoint; the job must have the ranks that wrote it."""
    path = sharded_checkpoint_path(directory, iteration, fsdp.rank, fsdp.world_size)
    if not path.is_file():
        written = sorted(
            {int(m.group(3)) for p in Path(directory).glob("*.pt") if (m := _SHARD_NAME.match(p.name))}
        )
        hint = f"it was written by {written[0]} ranks" if written else "no sharded checkpoint found there"
        raise ValueError(
            f"no shard {path.name} in {directory} for rank {fsdp.rank} of {fsdp.world_size} ({hint}); "
            "to change the number of ranks, save and load a gathered checkpoint instead"
        )
    layout = read_checkpoint(path)["extra"]["fsdp"]
    if (layout["rank"], layout["world_size"]) != (fsdp.rank, fsdp.world_size):
        raise ValueError(f"{path} holds rank {layout['rank']} of {layout['world_size']}, not this rank")
    return load_checkpoint(path, fsdp.module, optimizer, restore_rng=restore_rng)


def save_gathered_checkpoint(
    fsdp: FSDP,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    out: str | os.PathLike,
    *,
    config: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path | None:
    """Gather full weights and optimizer state; rank 0 writes one plain checkpoint to ``out``.

    Collective (every rank calls it); returns the path on rank 0 and None elsewhere."""
    model = StateHolder(fsdp.full_state_dict())
    full_optimizer = StateHolder(fsdp.full_optimizer_state_dict(optimizer)) if optimizer is not None else None
    if fsdp.rank != 0:
        return None
    save_checkpoint(model, full_optimizer, iteration, out, config=config, extra=extra)
    return Path(out)


def load_gathered_checkpoint(
    src: str | os.PathLike,
    fsdp: FSDP,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    restore_rng: bool = False,
) -> int:
    """Load a plain (single-process or gathered) checkpoint into an FSDP model on any number of
    ranks: every rank reads the file and keeps its slices. Returns the saved iteration."""
    payload = read_checkpoint(src)
    fsdp.load_full_state_dict(payload["model"])
    if optimizer is not None:
        if payload["optimizer"] is None:
            raise ValueError(f"{src} holds no optimizer state")
        fsdp.load_full_optimizer_state_dict(optimizer, payload["optimizer"])
    if restore_rng:
        restore_rng_state(payload["rng"])
    return int(payload["iteration"])
