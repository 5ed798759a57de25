"""How the unit-2 Triton kernels are launched.

Every kernel launch in ``systems/*_triton.py`` goes through :func:`launch`, which does three things a
bare ``kernel[grid](...)`` does not:

- checks that all tensors are on one device, and that the device can run Triton: a CUDA GPU, or the
  CPU under the Triton interpreter (``TRITON_INTERPRET=1`` set before triton is imported);
- launches under ``torch.cuda.device(tensor.device)``: Triton launches on the *current* CUDA device,
  so without the guard tensors on ``cuda:1`` would be read by a kernel running on ``cuda:0``;
- lets :func:`record_launches` capture the launch instead of running it. Called with ``meta`` tensors
  (shapes and dtypes, no memory), a launcher then reports exactly the kernels, grids and constexprs it
  would run on a GPU, which :mod:`systems.triton_resources` compiles ahead of time for an H100 to
  count registers and spills -- on a machine without a GPU.

``meta`` tensors are treated as GPU tensors (:func:`runs_natively`): the launch settings chosen for
them are the GPU ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Launch", "runs_natively", "launch", "record_launches"]


@dataclass(frozen=True)
class Launch:
    """One recorded kernel launch: what an ahead-of-time compile needs to build the same binary."""

    kernel: object  # the @triton.jit function
    grid: tuple[int, ...]
    args: tuple  # positional arguments (tensors, ints, floats)
    kwargs: dict  # constexprs and launch options (num_warps, num_stages)

    @property
    def name(self) -> str:
        return _kernel_name(self.kernel)


_recorder: list[Launch] | None = None  # set while record_launches() is active


def _is_interpreted(kernel) -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(kernel, InterpretedFunction)


def runs_natively(tensor: Tensor) -> bool:
    """True where launches compile for a GPU: CUDA tensors, and meta tensors (planning for a GPU)."""
    return tensor.is_cuda or tensor.is_meta


def _kernel_name(kernel) -> str:
    return getattr(kernel, "__name__", None) or kernel.fn.__name__


def _check_devices(kernel, tensors: list[Tensor]) -> None:
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(
            f"{_kernel_name(kernel)}: tensors are on different devices {sorted(map(str, devices))}"
        )
    device = tensors[0].device
    if device.type not in ("cuda", "meta") and not _is_interpreted(kernel):
        raise ValueError(
            f"{_kernel_name(kernel)}: got {device} tensors; the Triton kernels need CUDA tensors, or "
            "TRITON_INTERPRET=1 set before triton is imported to run them on the CPU"
        )


def launch(kernel, grid: tuple[int, ...], *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)`` on the tensors' own device (see the module docstring)."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    _check_devices(kernel, tensors)
    if _recorder is not None:
        _recorder.append(Launch(kernel, tuple(grid), args, dict(kwargs)))
        return
    device = tensors[0].device
    if device.type == "meta":
        raise ValueError(f"{_kernel_name(kernel)}: meta tensors have no memory; plan under record_launches()")
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        kernel[grid](*args, **kwargs)


@contextlib.contextmanager
def record_launches() -> Iterator[list[Launch]]:
    """Capture launches instead of running them: ``with record_launches() as launches: f(meta...)``."""
    global _recorder
    previous, _recorder = _recorder, []
    try:
        yield _recorder
    finally:
        _recorder = previous
