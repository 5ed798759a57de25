"""Reading the JSONL files users give the alignment stages, with one ``file:line: what is wrong`` error.

Every data file of this unit (SFT prompt/response pairs, GSM8K-format tasks, preference pairs,
multiple-choice benchmarks) is one JSON object per line. ``read_jsonl`` checks each line's fields and
their types before any training starts, so a typo on line 9,000 is reported at once, with its place:

    read_jsonl("pairs.jsonl", {"prompt": str, "chosen": str, "rejected": str})
    -> ValueError: pairs.jsonl:3: 'chosen' must be a string, got a number (12)

Blank lines are skipped; keys not asked for are kept as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def describe(value: Any) -> str:
    """'a number (12)', 'a list', 'null' -- how a JSON value reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value[:30]!r})"
    return "a list" if isinstance(value, list) else "an object"


def check_type(value: Any, expected: type, where: str, key: str) -> None:
    """Raise ``where: 'key' must be <expected>, got <value>`` unless ``value`` has the JSON type."""
    ok = isinstance(value, expected) and not (expected in (int, float) and isinstance(value, bool))
    if expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ValueError(
            f"{where}: {key!r} must be {_TYPE_NAMES.get(expected, expected.__name__)}, got {describe(value)}"
        )


def read_jsonl(path: str | Path, fields: Mapping[str, type], what: str = "data") -> list[dict[str, Any]]:
    """Every object of a JSONL file, each checked to hold ``fields`` (key -> JSON type)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    records = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {describe(record)}")
            for key, expected in fields.items():
                if key not in record:
                    raise ValueError(f"{where}: missing key {key!r} (needs {', '.join(map(repr, fields))})")
                check_type(record[key], expected, where, key)
            record["_line"] = number
            records.append(record)
    if not records:
        raise ValueError(f"{path}: no records (expected one JSON object per line)")
    return records
