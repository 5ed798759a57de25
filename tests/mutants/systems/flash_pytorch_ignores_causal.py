"""The PyTorch FlashAttention forward ignores is_causal (no mask on the diagonal tiles)."""

from __future__ import annotations

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_kernels.py::test_flash_pytorch",
]


_get = get_flashattention_autograd_function_pytorch  # noqa: F405


def get_flashattention_autograd_function_pytorch():
    inner = _get()

    class IgnoresCausal:
        @staticmethod
        def apply(q, k, v, is_causal=False):
            return inner.apply(q, k, v, False)  # the mistake

    return IgnoresCausal
