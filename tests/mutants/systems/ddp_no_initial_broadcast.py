"""DDP never broadcasts rank 0's initial parameters, so the ranks start apart."""

from __future__ import annotations

import torch

from tests.systems.adapters import *  # noqa: F403  (every other adapter is the reference)

KILLED_BY = [
    "tests/systems/core/test_parallel.py::test_ddp_individual_parameters",
]


_get = get_ddp_individual_parameters  # noqa: F405


def get_ddp_individual_parameters(module):
    own = {k: v.clone() for k, v in module.state_dict().items()}
    ddp = _get(module)
    with torch.no_grad():
        module.load_state_dict(own)  # the mistake: each rank keeps its own initialisation
    return ddp
