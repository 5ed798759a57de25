"""The stored fixtures of the core tokenizer graders are what the plain reference trainer gives."""

from __future__ import annotations

import json

import pytest

from tests.basics.make_core_fixtures import FIXTURES, expected_bpe

pytestmark = pytest.mark.extension


@pytest.mark.slow
def test_expected_merges_are_the_reference_trainers():
    stored = json.loads((FIXTURES / "bpe_expected.json").read_text(encoding="utf-8"))
    assert expected_bpe(FIXTURES / "bpe_train.txt") == stored
