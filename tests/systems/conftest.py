"""Run the Triton kernels through the Triton interpreter when there is no GPU.

``TRITON_INTERPRET=1`` must be set before ``triton`` is first imported (triton reads it when a kernel
is decorated), and conftest files are imported before any test module, so this is early enough. With
CUDA present the kernels compile and run natively; a value already in the environment is kept.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
