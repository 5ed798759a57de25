"""A deliberately wrong implementation, to show that the graders grade.

Everything forwards to the real adapters except ``run_train_bpe``, which breaks ties between
equally frequent pairs by taking the lexicographically *smallest* pair instead of the greatest --
a one-word bug that produces plausible-looking merges. The suite must fail on it::

    pytest tests/basics/test_train_bpe.py --adapters basics=tests.basics.broken_adapters
"""

from __future__ import annotations

from tests.basics.adapters import *  # noqa: F403  (every other adapter is the real one)
from tests.basics.bpe_reference import reference_train_bpe


def run_train_bpe(input_path, vocab_size, special_tokens, **kwargs):
    """BPE training with the wrong tie-break (smallest pair wins)."""
    return reference_train_bpe(input_path, vocab_size, list(special_tokens or []), prefer="smallest")
