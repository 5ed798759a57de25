"""Fixtures of the systems graders.

``kernel_device``: where the kernel graders put their inputs. On a machine with CUDA the Triton
kernels compile and run natively on the GPU; without it they run on CPU tensors through the Triton
interpreter (the root ``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` before anything imports
triton). The same test bodies run in both places: a grader builds its inputs on the CPU (seeded),
moves them to ``kernel_device``, and compares the results with an fp64 reference on the CPU.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def kernel_device() -> torch.device:
    """``cuda`` when a GPU is present (native Triton kernels), else ``cpu`` (the Triton interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
