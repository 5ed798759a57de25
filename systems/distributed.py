"""Process-group set-up for data-parallel training: read the ``torchrun`` environment, start the group.

Course handout (CS336 assignment 2), section "Distributed data parallel training". ``torchrun
--nproc_per_node N script.py`` starts N copies of a script and tells each one who it is through
environment variables::

    RANK         this process's index among all processes (0 .. WORLD_SIZE-1)
    WORLD_SIZE   how many processes take part
    LOCAL_RANK   this process's index on its own machine (picks the GPU)
    MASTER_ADDR, MASTER_PORT   where rank 0 listens so the others can find it

:func:`init_distributed` reads them and starts the process group: ``gloo`` for CPU tensors and
``nccl`` for CUDA tensors (each rank on GPU ``LOCAL_RANK``). A script that was *not* launched by
torchrun gets a single-process ``DistributedInfo`` (world size 1) and no process group, so the same
training code runs both ways::

    info = init_distributed()           # rank 0 of 1 when run as plain `python train.py`
    ...                                 # train; log only when info.rank == 0
    cleanup_distributed()

Reading the environment is the one place in the library that does so: it is the launcher's
interface, not a behaviour switch.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from basics.device import resolve_device

__all__ = [
    "DistributedInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "group_rank_and_size",
    "broadcast_from_rank0",
    "run_on_local_ranks",
]

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedInfo:
    """Who this process is in the data-parallel job."""

    rank: int  # global index of this process, 0 .. world_size-1
    world_size: int  # number of processes in the job (1 when not launched by torchrun)
    local_rank: int  # index on this machine; selects the GPU
    device: torch.device  # where this rank keeps its model and data
    is_distributed: bool  # True when a process group was initialised

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0


def is_distributed() -> bool:
    """True when a default process group exists (so collectives can be called)."""
    return dist.is_available() and dist.is_initialized()


def group_rank_and_size(group=None) -> tuple[int, int]:
    """(rank, world size) within ``group`` (None: the default group); (0, 1) without a process group,
    so the parallel wrappers run their single-rank path unchanged."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


@torch.no_grad()
def broadcast_from_rank0(module: torch.nn.Module, group=None) -> None:
    """Overwrite every parameter (trainable or frozen) and buffer with the values of the first rank
    of ``group`` (None: global rank 0), in place, so every replica or shard starts from the same weights."""
    source = dist.get_global_rank(group, 0) if group is not None else 0  # src is a *global* rank
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=source, group=group)


def init_distributed(device: str = "auto", backend: str | None = None) -> DistributedInfo:
    """Start the default process group from the torchrun environment and return this rank's info.

    ``device`` is ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``; with CUDA each
    rank takes GPU ``LOCAL_RANK``. ``backend`` defaults to ``nccl`` for CUDA and ``gloo`` for CPU.
    Without the torchrun variables nothing is initialised and world size is 1. Calling it again after
    the group exists returns the same info without re-initialising.
    """
    env = os.environ
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return DistributedInfo(0, 1, 0, resolve_device(device, local_rank=0), False)
    missing = [name for name in _TORCHRUN_VARIABLES if name not in env]
    if missing:
        raise ValueError(f"init_distributed: torchrun environment incomplete, missing {', '.join(missing)}")
    rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
    local_rank = int(env["LOCAL_RANK"])
    if not 0 <= rank < world_size:
        raise ValueError(f"init_distributed: RANK={rank} is outside 0..WORLD_SIZE-1={world_size - 1}")
    resolved = resolve_device(device, local_rank=local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if backend is None:
        backend = "nccl" if resolved.type == "cuda" else "gloo"
    if not is_distributed():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistributedInfo(rank, world_size, local_rank, resolved, True)


def cleanup_distributed() -> None:
    """Tear down the default process group if one exists (safe to call in single-process runs)."""
    if is_distributed():
        dist.destroy_process_group()


def _spawned_rank(
    rank: int, world_size: int, port: int, out_dir: str, backend: str, threads: int, fn, args
) -> None:
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    timeout = datetime.timedelta(seconds=600)
    store = dist.TCPStore("127.0.0.1", port, world_size + 1, is_master=False, timeout=timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    try:
        result = fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def run_on_local_ranks(fn, world_size: int, *args, backend: str = "gloo", threads: int = 1) -> list:
    """Start ``world_size`` processes on this machine, each in a process group of ``backend`` (nccl:
    rank r on GPU r), run ``fn(rank, world_size, *args)`` in each and return the results by rank
    (``fn`` must be a module-level function; its result goes back through ``torch.save``). For
    benchmarks and demos without ``torchrun``; the parent hosts the rendezvous on a free port."""
    store = dist.TCPStore("127.0.0.1", 0, world_size + 1, is_master=True, wait_for_workers=False)
    with tempfile.TemporaryDirectory() as out_dir:
        spawn_args = (world_size, store.port, out_dir, backend, threads, fn, args)
        mp.spawn(_spawned_rank, args=spawn_args, nprocs=world_size, join=True)
        # weights_only=False is safe here: the files are this call's own ranks' results, in a temporary
        # folder it created a moment ago (results may be any picklable value, not only tensors).
        return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
