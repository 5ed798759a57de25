"""Write the tokenizer fixtures of the core graders (tests/basics/core/fixtures/), like the course's
own reference files: a training text, a text to encode, and the merges and vocabulary that BPE
training must produce on the training text (from the plain reference trainer, bpe_reference.py).

    python -m tests.basics.make_core_fixtures

The texts are slices of the built-in corpus (standard-library documentation) plus a multilingual
paragraph, cut at document boundaries; they are stored so the expected merges never depend on the
Python version that builds the corpus. test_core_fixtures.py checks the stored files are current.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.basics.bpe_reference import ENDOFTEXT, reference_train_bpe

FIXTURES = Path(__file__).resolve().parent / "core" / "fixtures"
VOCAB_SIZE = 600
UNICODE = (
    "Übergrößenträger café naïve 東京都 東京 京都 🙂🙂 🙂 ñandú ñu — 'll 've's don't 42 4242 "
    "\t\n\n  trailing  \n    ====  ----  ....  aaaa aaa aa\n"
)


def corpus_slices() -> tuple[str, str]:
    from basics.corpus import build_corpus

    paths = build_corpus()
    train = paths.train.read_text(encoding="utf-8")
    train = train[: train.index(ENDOFTEXT, 90_000)] + ENDOFTEXT + UNICODE * 3
    validation = paths.validation.read_text(encoding="utf-8")
    validation = validation[: validation.index(ENDOFTEXT, 40_000)] + ENDOFTEXT + UNICODE + ENDOFTEXT * 2
    return train, validation


def expected_bpe(train_path: Path) -> dict:
    vocab, merges = reference_train_bpe(train_path, VOCAB_SIZE, [ENDOFTEXT])
    return {
        "vocab_size": VOCAB_SIZE,
        "special_tokens": [ENDOFTEXT],
        "merges": [[a.hex(), b.hex()] for a, b in merges],
        "vocab_values": sorted(token.hex() for token in vocab.values()),
    }


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    train, validation = corpus_slices()
    (FIXTURES / "bpe_train.txt").write_text(train, encoding="utf-8", newline="")
    (FIXTURES / "encode_sample.txt").write_text(validation, encoding="utf-8", newline="")
    expected = expected_bpe(FIXTURES / "bpe_train.txt")
    (FIXTURES / "bpe_expected.json").write_text(json.dumps(expected, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {FIXTURES}: {len(expected['merges'])} merges")


if __name__ == "__main__":
    main()
