"""Test helpers for the distributed graders: spawn gloo ranks on the CPU, a toy model, toy data.

``run_on_ranks(fn, world_size, *args)`` starts ``world_size`` processes with
``torch.multiprocessing.spawn``; each joins a gloo process group and returns ``fn(rank, world_size,
*args)``, which comes back to the test as a list indexed by rank. The rendezvous store lives in the
test process and listens on a port the OS picks (port 0), so there is no race for a "free port" and
any number of these runs can go on in parallel (pytest-xdist). ``fn`` must be a module-level function
(spawn pickles it by name) and its result must be ``torch.save``-able.

Nothing here touches the implementation under test: workers reach it through an adapters module
whose *name* they are given (the ``adapters`` fixture's ``__name__``).
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from filelock import FileLock
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.weak import WeakIdKeyDictionary

TIMEOUT = datetime.timedelta(seconds=120)


def _entry(rank: int, world_size: int, port: int, out_dir: str, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(1)  # 2 ranks on a shared 2-core machine
    store = dist.TCPStore("127.0.0.1", port, world_size + 1, is_master=False, timeout=TIMEOUT)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=TIMEOUT)
    try:
        result = fn(rank, world_size, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


# Ranks are forked from a "fork server" that imported torch (and torch._dynamo, which the first
# optimizer construction imports) once: a fresh interpreter per rank would pay that import -- several
# seconds on a busy 2-core machine -- in every run. The server never runs torch ops itself, so forking
# it is safe (unlike forking the test process, whose OpenMP threads may be live).
mp.get_context("forkserver").set_forkserver_preload(["torch", "torch._dynamo", "torch.distributed", __name__])


def run_on_ranks(
    fn: Callable[..., Any], world_size: int = 2, *args: Any, results_dir: Path | None = None
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo ranks; return results by rank.
    With ``results_dir`` the ranks' result files stay there (see :func:`once_per_session`)."""
    # The test process hosts the store on an OS-chosen port; the ranks connect as clients.
    store = dist.TCPStore(
        "127.0.0.1", 0, world_size + 1, is_master=True, timeout=TIMEOUT, wait_for_workers=False
    )
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = str(results_dir or scratch)
        mp.start_processes(
            _entry,
            args=(world_size, store.port, out_dir, fn, args),
            nprocs=world_size,
            join=True,
            start_method="forkserver",
        )
        return load_rank_results(Path(out_dir), world_size)


def load_rank_results(folder: Path, world_size: int) -> list[Any]:
    """The results :func:`run_on_ranks` left in ``folder``, by rank (written by this test session's own
    ranks, never user data, hence ``weights_only=False``: a rank may return any picklable value)."""
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def once_per_session(tmp_path_factory, name: str, make: Callable[[Path], object]) -> Path:
    """Run ``make(folder)`` once per test session and return the folder it filled.

    For the runs behind a module-scoped fixture: pytest-xdist builds such a fixture once in *every*
    worker that gets one of the module's tests, so an expensive run would be repeated. Under xdist
    the folder is in the session's temporary folder, which all workers share; the first worker to
    ask runs ``make`` while holding a file lock, the others wait for it and then only read the
    folder. A run that failed is cleaned away and tried again by the next worker that asks.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / name
    else:
        folder = tmp_path_factory.mktemp(name)
    finished = folder / ".finished"
    with FileLock(f"{folder}.lock"):
        if not finished.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            finished.touch()
    return folder


def load_adapters(name: str) -> ModuleType:
    """The adapters module (name or file path) a worker was given, imported in the worker."""
    from tests.grading import import_adapters

    return import_adapters(name)


# ---- toy model: tied embedding/output weights, a frozen layer, a buffer ----

VOCAB, D_MODEL, D_HIDDEN = 32, 16, 32


class ToyTiedModel(nn.Module):
    """Tiny LM-shaped model with everything DDP must handle: a weight shared by two layers (counted
    once), a frozen layer (broadcast but never reduced) and a buffer (broadcast)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        self.frozen = nn.Linear(D_MODEL, D_MODEL)
        self.frozen.requires_grad_(False)
        self.norm = nn.LayerNorm(D_MODEL)
        self.fc1 = nn.Linear(D_MODEL, D_HIDDEN)
        self.fc2 = nn.Linear(D_HIDDEN, D_MODEL)
        self.lm_head = nn.Linear(D_MODEL, VOCAB, bias=False)
        self.lm_head.weight = self.embed.weight  # tied
        self.register_buffer("scale", 1.0 + 0.1 * torch.randn(D_MODEL))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)  # (batch, seq, d_model)
        x = x + torch.tanh(self.frozen(x))
        x = x + self.fc2(F.gelu(self.fc1(self.norm(x)))) * self.scale
        return self.lm_head(x)  # (batch, seq, vocab)


def make_model(seed: int) -> ToyTiedModel:
    torch.manual_seed(seed)
    return ToyTiedModel()


def global_batch(step: int, batch_size: int = 8, seq: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole step's batch: inputs and next-token targets, the same on every rank."""
    generator = torch.Generator().manual_seed(1000 + step)
    tokens = torch.randint(0, VOCAB, (batch_size, seq + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def rank_slice(tensor: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous share of the global batch (ranks see different data)."""
    share = tensor.shape[0] // world_size
    return tensor[rank * share : (rank + 1) * share]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters (trainable and frozen) and buffers, detached copies, by name."""
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


# ---- measuring a step from the outside: collectives sent, tensor bytes alive ----


class CollectiveLog(TorchDispatchMode):
    """Records every c10d operation (all-gather, reduce-scatter, all-reduce, send, recv, ...) issued
    while active, with the bytes of its largest tensor: ``[(op_name, nbytes), ...]`` in
    ``self.calls``.
    Sees collectives however they are called (``dist.*`` or functional), since all of them go
    through the dispatcher. ``self.events`` interleaves them with matmuls (for overlap checks)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []
        self.events: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "c10d":
            name = func._schema.name.split("::")[-1]
            tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            # The largest tensor: the full buffer of an all-gather / reduce-scatter (what ring
            # algorithms move (w-1)/w of), the message of an all-reduce, send or recv.
            nbytes = max((t.numel() * t.element_size() for t in tensors), default=0)
            self.calls.append((name, nbytes))
            self.events.append(name)
        elif func in (torch.ops.aten.mm.default, torch.ops.aten.bmm.default, torch.ops.aten.addmm.default):
            self.events.append("mm")
        return func(*args, **kwargs)

    def count(self, *names: str) -> int:
        return sum(1 for name, _ in self.calls if name in names)


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of tensor storage allocated while active and still alive: ``live()`` now, ``peak``
    over the whole time. Storages are watched through weak references; a storage that an
    implementation shrinks with ``resize_(0)`` counts at its current size."""

    def __init__(self) -> None:
        super().__init__()
        self.storages = WeakIdKeyDictionary()
        self.peak = 0

    def live(self) -> int:
        return sum(storage.nbytes() for storage in list(self.storages.keys()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                self.storages[tensor.untyped_storage()] = True
        self.peak = max(self.peak, self.live())
        return out


def replay_pipeline(
    orders: list[list[tuple[str, int]]], forward_cost: float = 1.0, backward_cost: float = 2.0
):
    """Replay the op sequences the pipeline stages executed (``orders[s]``: stage s's list of
    ("F" | "B", micro-batch)) with fixed op costs, respecting the data dependencies: F_i on stage s
    after F_i on s-1; B_i on s after B_i on s+1 (the last stage: after its own F_i). Returns the
    idle fraction of stage-time (the bubble). Raises if the orders cannot complete."""
    stages = len(orders)
    finish: dict[tuple[str, int, int], float] = {}
    clocks, positions, work = [0.0] * stages, [0] * stages, 0.0
    pending = sum(map(len, orders))
    while pending:
        before = pending
        for s in range(stages):
            if positions[s] == len(orders[s]):
                continue
            kind, i = orders[s][positions[s]]
            if kind == "F":
                dependency = ("F", i, s - 1) if s > 0 else None
            else:
                dependency = ("B", i, s + 1) if s < stages - 1 else ("F", i, s)
            if dependency is not None and dependency not in finish:
                continue
            cost = forward_cost if kind == "F" else backward_cost
            ready = finish[dependency] if dependency is not None else 0.0
            clocks[s] = finish[(kind, i, s)] = max(clocks[s], ready) + cost
            work += cost
            positions[s] += 1
            pending -= 1
        if pending == before:
            raise AssertionError(f"pipeline orders deadlock: {orders}")
    return 1.0 - work / (stages * max(clocks))


def ring_bytes_sent(calls: list[tuple[str, int]], world_size: int) -> float:
    """Bytes one rank sends for a CollectiveLog's calls under the ring model: an all-reduce 2(w-1)/w
    of its buffer, an all-gather or a reduce-scatter (w-1)/w of the full buffer, a send its tensor."""
    ring = (world_size - 1) / world_size
    factor = {"allreduce_": 2 * ring, "_allgather_base_": ring, "_reduce_scatter_base_": ring, "send": 1.0}
    return sum(factor.get(op, 0.0) * nbytes for op, nbytes in calls)
