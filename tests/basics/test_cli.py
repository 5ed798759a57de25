"""The dataclass -> flags helper every script uses (infrastructure, not a course grader)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from basics.cli import add_config_arguments, config_from_arguments, field_comments

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


@dataclass(frozen=True)
class Inner:
    width: int = 4  # how wide


@dataclass(frozen=True)
class Example:
    inner: Inner = field(default_factory=Inner)  # nested: skipped
    steps: int = 10  # how many steps
    rate: float = 0.5
    name: str = "run"  # a name with 100% of the help
    mode: Literal["a", "b"] = "a"  # a or b
    flag: bool = False  # switch it on
    limit: int | None = None  # optional limit
    sizes: tuple[int, ...] = (1, 2)  # several sizes


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Example)
    return parser, parser.parse_args(argv)


def test_flags_round_trip_into_the_config():
    _, args = parse(["--steps", "3", "--mode", "b", "--flag", "--limit", "7", "--sizes", "4", "5", "6"])
    config = config_from_arguments(Example, args)
    assert config == Example(steps=3, mode="b", flag=True, limit=7, sizes=(4, 5, 6))
    _, args = parse(["--limit", "none", "--no-flag"])
    assert config_from_arguments(Example, args) == Example(limit=None, flag=False)


def test_unset_flags_keep_the_base_preset():
    _, args = parse(["--rate", "0.25"])
    base = Example(steps=99, name="preset")
    assert config_from_arguments(Example, args, base=base) == Example(steps=99, name="preset", rate=0.25)


def test_bad_choice_is_an_argparse_error():
    with pytest.raises(SystemExit):
        parse(["--mode", "c"])


def test_help_comes_from_trailing_comments():
    assert field_comments(Example)["steps"] == "how many steps"
    parser, _ = parse([])
    text = parser.format_help()
    assert "how many steps (default: 10)" in text
    assert "--inner" not in text
    assert "100% of the help" in text


def test_run_main_turns_bad_input_into_one_line(capsys):
    from basics.cli import run_main

    def bad():
        raise FileNotFoundError("no such corpus: x.txt")

    with pytest.raises(SystemExit) as exit_info:
        run_main(bad)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: no such corpus: x.txt\n"
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: 3)
    assert exit_info.value.code == 3


def _raise(error):
    def main():
        raise error

    return main


@pytest.mark.parametrize(
    "error, code, line",
    [
        (IsADirectoryError(21, "Is a directory", "out"), 2, "error: [Errno 21] Is a directory: 'out'"),
        (__import__("sqlite3").DatabaseError("file is not a database"), 2, "error: file is not a database"),
        (ValueError("first line\n  second line"), 2, "error: first line second line"),
    ],
)
def test_run_main_covers_every_user_error_in_one_line(capsys, error, code, line):
    from basics.cli import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(_raise(error))
    assert exit_info.value.code == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_run_main_uses_an_errors_exit_code_and_keeps_tracebacks_of_bugs(capsys):
    from basics.cli import run_main

    class JobFailed(RuntimeError):
        exit_code = 1

    with pytest.raises(SystemExit) as exit_info:
        run_main(_raise(JobFailed("loss became NaN at step 7")))
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "error: loss became NaN at step 7\n"
    with pytest.raises(KeyError):  # a bug, not bad input: the traceback stays
        run_main(_raise(KeyError("oops")))


def test_argument_parser_errors_are_one_line(capsys):
    from basics.cli import ArgumentParser, positive_int

    parser = ArgumentParser(prog="tool")
    parser.add_argument("--steps", type=positive_int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--steps", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: argument --steps: must be a positive integer, got 0 (see tool --help)"
    ]
