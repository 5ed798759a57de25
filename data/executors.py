"""Run the pipeline's tasks -- one per shard -- in this process, in local worker processes, or on Ray.

``run_tasks(function, jobs, config)`` calls ``function(*job)`` for every job and yields
``(job index, result, None)`` or ``(job index, None, "ErrorType: message")`` as tasks finish: a
task that raises is reported and the others carry on (datatrove's executors do the same).

* ``executor="local"``: a ``ProcessPoolExecutor`` of ``num_workers`` processes (in this process
  when ``num_workers`` is 1 or there is one job). Workers **die with their parent**: if the
  driver is killed (even by SIGKILL, which runs no clean-up code) the kernel signals the workers
  on Linux (``prctl(PR_SET_PDEATHSIG)``), and on every platform a watchdog thread in each worker
  exits it once its parent is gone -- no orphan keeps burning a core.
* ``executor="ray"``: the same tasks as Ray remote functions, on a local Ray started here (and
  shut down after) or an existing cluster (``ray_address``). Ray ends a driver's workers itself
  when the driver dies.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Outcome = tuple[int, Any, str | None]  # (job index, result or None, error message or None)


@dataclass(frozen=True)
class ExecutorConfig:
    """Where the pipeline's tasks run."""

    executor: Literal["local", "ray"] = "local"  # local processes, or Ray tasks
    num_workers: int = 2  # local processes (1: run in this process) or Ray CPUs when starting Ray
    ray_address: str | None = None  # an existing Ray cluster ("auto", "ray://host:10001"); None starts one

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise ValueError(f"unknown executor {self.executor!r}; choose 'local' or 'ray'")
        if (
            isinstance(self.num_workers, bool)
            or not isinstance(self.num_workers, int)
            or self.num_workers < 1
        ):
            raise ValueError(f"num_workers must be a positive integer, got {self.num_workers!r}")


def _message(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"


def run_tasks(
    function: Callable[..., Any],
    jobs: Sequence[tuple],
    config: ExecutorConfig,
    progress: bool = False,
    desc: str = "",
) -> Iterator[Outcome]:
    """Run ``function(*job)`` for every job (see the module docstring); a tqdm bar with ``progress``."""
    from tqdm.auto import tqdm

    if config.executor == "ray":
        outcomes = _run_ray(function, jobs, config)
    elif config.num_workers <= 1 or len(jobs) <= 1:
        outcomes = _run_here(function, jobs)
    else:
        outcomes = _run_local(function, jobs, min(config.num_workers, len(jobs)))
    with tqdm(total=len(jobs), desc=desc, unit="shard", disable=not progress) as bar:
        for outcome in outcomes:
            yield outcome
            bar.update()


def _run_here(function: Callable[..., Any], jobs: Sequence[tuple]) -> Iterator[Outcome]:
    for index, job in enumerate(jobs):
        try:
            result = function(*job)
        except Exception as error:  # a bad shard is reported, the others go on
            yield index, None, _message(error)
        else:
            yield index, result, None


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when process ``parent`` is gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:  # the kernel sends SIGKILL when the parent dies: instant, whatever this worker does
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:  # portable fallback: a re-parented worker has another parent id
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def _run_local(function: Callable[..., Any], jobs: Sequence[tuple], workers: int) -> Iterator[Outcome]:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(function, *job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            error = future.exception()
            yield (
                futures[future],
                None if error else future.result(),
                None if error is None else _message(error),
            )


def _run_ray(
    function: Callable[..., Any], jobs: Sequence[tuple], config: ExecutorConfig
) -> Iterator[Outcome]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        where = (
            {"num_cpus": config.num_workers}
            if config.ray_address is None
            else {"address": config.ray_address}
        )
        ray.init(include_dashboard=False, log_to_driver=False, **where)
    try:
        remote = ray.remote(max_retries=0)(function)
        pending = {remote.remote(*job): index for index, job in enumerate(jobs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                yield index, ray.get(done[0]), None
            except Exception as error:  # RayTaskError wraps the task's exception
                yield index, None, _message(getattr(error, "cause", None) or error)
    finally:
        if started_here:
            ray.shutdown()
