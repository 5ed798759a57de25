"""The Triton FlashAttention kernel ignores is_causal."""

from __future__ import annotations

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_kernels.py::test_flash_triton",
]


_get = get_flashattention_autograd_function_triton  # noqa: F405


def get_flashattention_autograd_function_triton():
    inner = _get()

    class IgnoresCausal:
        @staticmethod
        def apply(q, k, v, is_causal=False):
            return inner.apply(q, k, v, False)  # the mistake

    return IgnoresCausal
