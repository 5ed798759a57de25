"""Graders: tokenizer files from disk are type-checked. A ``vocab.json`` whose ids are not integers
(lists, null, strings, floats, booleans, negatives) is one ``ValueError`` naming the file and the
token, which the scripts print as one ``error:`` line -- not a ``TypeError`` traceback from deep
inside the loader."""

from __future__ import annotations

import json

import pytest

from tests.basics.bpe_reference import gpt2_bytes_to_unicode

pytestmark = pytest.mark.extension


def write_files(tmp_path, extra_id):
    table = gpt2_bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    vocab["Ġthe"] = extra_id
    (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return tmp_path / "vocab.json", tmp_path / "merges.txt"


@pytest.mark.parametrize("bad_id", [[256, 257], None, "256", 256.5, True, -1], ids=repr)
def test_a_vocab_id_that_is_not_an_integer_is_one_error_naming_file_and_token(adapters, tmp_path, bad_id):
    vocab_path, merges_path = write_files(tmp_path, bad_id)
    with pytest.raises(ValueError) as error:
        adapters.get_tokenizer_from_files(vocab_path, merges_path)
    assert "vocab.json" in str(error.value) and "Ġthe" in str(error.value)


def test_integer_ids_still_load(adapters, tmp_path):
    vocab_path, merges_path = write_files(tmp_path, 256)
    tokenizer = adapters.get_tokenizer_from_files(vocab_path, merges_path)
    assert tokenizer.decode(tokenizer.encode("the")) == "the"
