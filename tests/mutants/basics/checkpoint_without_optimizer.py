"""The checkpoint saves the model and iteration but not the optimizer state."""

from __future__ import annotations

import torch

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/basics/core/test_training.py::test_checkpoint_round_trip",
]


def run_save_checkpoint(model, optimizer, iteration, out):
    torch.save({"model": model.state_dict(), "iteration": iteration}, out)


def run_load_checkpoint(src, model, optimizer):
    state = torch.load(src, weights_only=True)
    model.load_state_dict(state["model"])
    return state["iteration"]
