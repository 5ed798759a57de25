"""Checkpoints: everything an exact resume needs, in one file that can never run code when loaded.

Course handout (CS336 assignment 1), section "Checkpointing". A checkpoint holds the model's and the
optimizer's state dicts and the iteration, as in the handout, plus what a bit-exact resume also needs:
the random number generators' states (torch CPU, every CUDA device, NumPy's global RNG and Python's
``random``) and the run's config as a plain dict, so a script can rebuild the model from the file.

Safety: files are read with ``torch.load(weights_only=True)``, whose unpickler only builds tensors and
plain containers, so a malicious checkpoint cannot execute code. Everything we store is therefore kept
plain: NumPy's RNG state as a tensor and ints, Python's as a list of ints, paths as strings.

Robustness: a save to a path writes a temporary file in the same directory and renames it over the
target (``os.replace`` is atomic), so a crash mid-save leaves the previous checkpoint intact. A
truncated or foreign file gives a ValueError naming it.

    >>> save_checkpoint(model, optimizer, 100, "runs/a/checkpoint_00000100.pt")   # doctest: +SKIP
    >>> load_checkpoint(latest_checkpoint("runs/a"), model, optimizer)            # doctest: +SKIP
    100
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from basics.files import atomic_write

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "read_checkpoint_config",
    "capture_rng_state",
    "restore_rng_state",
    "apply_checkpoint",
    "checkpoint_path",
    "latest_checkpoint",
    "read_latest_checkpoint",
    "prune_checkpoints",
    "remove_partial_saves",
]

FORMAT = "lm-from-scratch/checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^checkpoint_(\d+)\.pt$")  # what latest_checkpoint picks
_ANY_PART = re.compile(r"^checkpoint_(\d+)(?:\.rank\d+)?\.pt$")  # ... and the per-rank parts
_PARTIAL = re.compile(r"^\.checkpoint_\d+(?:\.rank\d+)?\.pt\..*\.tmp$")  # save_checkpoint's temporary files

PathOrFile = str | os.PathLike | IO[bytes]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside ``torch.compile`` (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _plain(value: Any, where: str = "config") -> Any:
    """Turn ``value`` into data ``torch.load(weights_only=True)`` accepts (dataclasses -> dicts, Paths -> str)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    raise ValueError(f"cannot store {where} of type {type(value).__name__} in a checkpoint; use plain data")


def capture_rng_state() -> dict[str, Any]:
    """The state of every RNG a training run draws from, as plain data."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            # A tensor, not an ndarray: weights_only loading refuses numpy objects. int64 holds
            # every uint32 key exactly; restore casts back.
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
        # Dropout on a GPU draws from these; without them a resumed CUDA run would diverge.
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back RNG states captured by :func:`capture_rng_state` (CUDA only if the device count matches)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["internal"]), py_state["gauss_next"]))
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    iteration: int,
    out: PathOrFile,
    *,
    config: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write model, optimizer, ``iteration``, RNG states and ``config`` to ``out`` (a path or binary file).

    ``config`` is a dict or a dataclass (stored as a dict); ``extra`` is any plain data (e.g. the
    best validation loss). A path is written atomically, creating its directory if needed.
    """
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch_version": str(torch.__version__),  # TorchVersion is not a weights_only-safe type
        "iteration": int(iteration),
        "model": _unwrap(model).state_dict(),  # the plain module's names, loadable without the wrappers
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": capture_rng_state(),
        "config": _plain(config),
        "extra": _plain(extra, "extra"),
    }
    if not isinstance(out, str | os.PathLike):  # a file object: the caller owns its atomicity
        torch.save(payload, out)
        return
    with atomic_write(out) as f:
        torch.save(payload, f)


def _name(src: PathOrFile) -> str:
    if isinstance(src, str | os.PathLike):
        return os.fspath(src)
    return str(getattr(src, "name", type(src).__name__))


def read_checkpoint(src: PathOrFile, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint's contents (a dict) without touching any model."""
    name = _name(src)
    if isinstance(src, str | os.PathLike) and not Path(src).is_file():
        raise FileNotFoundError(f"no such checkpoint file: {name}")
    try:
        payload = torch.load(src, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, foreign pickle, refused global, garbage bytes, ...
        if isinstance(error, pickle.UnpicklingError):
            detail = "it holds objects that torch.load(weights_only=True) refuses to build"
        else:
            detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"{name} is not a readable checkpoint (truncated or foreign file?): {detail}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{name} is not an lm-from-scratch checkpoint (no {FORMAT!r} marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{name}: checkpoint format version {payload.get('format_version')} is not supported"
        )
    return payload


def load_checkpoint(
    src: PathOrFile,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    restore_rng: bool = False,
    map_location: str | torch.device = "cpu",
) -> int:
    """Load model (and optimizer) state from ``src`` and return the saved iteration.

    With ``restore_rng=True`` the RNG states are put back too, which an exact resume needs.
    Tensors are mapped to ``map_location`` first; ``load_state_dict`` then copies them to wherever
    the model's parameters live.
    """
    payload = read_checkpoint(src, map_location=map_location)
    return apply_checkpoint(payload, model, optimizer, restore_rng=restore_rng, name=_name(src))


def apply_checkpoint(
    payload: Mapping[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    restore_rng: bool = False,
    name: str = "checkpoint",
) -> int:
    """Put the state of a payload from :func:`read_checkpoint` into ``model`` (and ``optimizer``);
    return its iteration. A state that does not fit is a ValueError naming the file."""
    try:
        _unwrap(model).load_state_dict(payload["model"])
    except RuntimeError as error:
        raise ValueError(f"{name}: model state does not fit this model: {error}") from None
    if optimizer is not None:
        if payload["optimizer"] is None:
            raise ValueError(f"{name} holds no optimizer state")
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except (ValueError, KeyError) as error:
            raise ValueError(f"{name}: optimizer state does not fit this optimizer: {error}") from None
    if restore_rng:
        restore_rng_state(payload["rng"])
    return int(payload["iteration"])


def read_checkpoint_config(src: PathOrFile) -> dict[str, Any] | None:
    """The config dict stored with a checkpoint (None if it was saved without one)."""
    return read_checkpoint(src)["config"]


def checkpoint_path(directory: str | os.PathLike, iteration: int, rank: int = 0) -> Path:
    """The conventional name of the checkpoint at ``iteration``: ``directory/checkpoint_00000100.pt``.

    A rank other than 0 (a sharded optimizer keeps part of its state on every rank) writes its part
    beside it as ``checkpoint_00000100.rank1.pt``, which :func:`latest_checkpoint` never picks.
    """
    name = f"checkpoint_{int(iteration):08d}"
    return Path(directory) / (f"{name}.pt" if rank == 0 else f"{name}.rank{int(rank)}.pt")


def _checkpoints(directory: Path, pattern: re.Pattern[str] = _NAME) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the files named like checkpoints (anything else, e.g. a hand-copied
    ``checkpoint_best.pt``, is not ours and is left alone), oldest first."""
    if not directory.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in directory.iterdir() if (m := pattern.match(p.name)) and p.is_file()
    ]
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The ``checkpoint_<iteration>.pt`` in ``directory`` with the highest iteration, or None."""
    found = _checkpoints(Path(directory))
    return found[-1][1] if found else None


def read_latest_checkpoint(
    directory: str | os.PathLike, *, map_location: str | torch.device = "cpu"
) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """The newest checkpoint in ``directory`` that can be read: ``(path, payload, skipped)``.

    A newer file that cannot be read (truncated by a full disk, overwritten by hand) is skipped and
    described in ``skipped``, so a run resumes from the newest good state and can say what it passed
    over. ``(None, None, skipped)`` when no checkpoint is readable.
    """
    skipped = []
    for _, path in reversed(_checkpoints(Path(directory))):
        try:
            return path, read_checkpoint(path, map_location=map_location), skipped
        except ValueError as error:
            skipped.append(str(error))
    return None, None, skipped


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest iterations' checkpoints (with their per-rank parts); return
    what was deleted. Files whose names are not ours are never touched."""
    if keep <= 0:
        raise ValueError(f"prune_checkpoints: keep must be positive, got {keep}")
    found = _checkpoints(Path(directory), _ANY_PART)
    iterations = sorted({iteration for iteration, _ in found})
    doomed = set(iterations[:-keep])  # by iteration, so a step's per-rank parts go together
    removed = [path for iteration, path in found if iteration in doomed]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def remove_partial_saves(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of saves that never finished (a process killed mid-write leaves
    ``.checkpoint_*.tmp`` behind); return them. Call it before a job starts writing checkpoints."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    partial = [p for p in directory.iterdir() if _PARTIAL.match(p.name) and p.is_file()]
    for path in partial:
        path.unlink(missing_ok=True)
    return partial
