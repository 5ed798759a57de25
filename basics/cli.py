"""Turn a frozen config dataclass into command-line flags, and back.

Every script builds its parser from the config it runs, so a new field is a new flag with no
extra code::

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    config = config_from_arguments(TrainConfig, parser.parse_args())

Field ``max_steps: int = 100`` becomes ``--max-steps 100``; a bool field becomes
``--name/--no-name``; ``tuple[...]`` and ``list[...]`` fields take several values; a field without
a default is a required flag; the help text is the field's ``help`` metadata, else the field's
trailing ``# comment`` in the class source (the style every config here follows), else its name.
Nested dataclass fields are skipped: the script adds their flags from the nested class (with a
``prefix``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import math
import pickle
import re
import sqlite3
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

_SCALARS = (int, float, str, Path)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``int | None`` -> (int, True); ``int`` -> (int, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_optional(inner: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else inner(text)

    parse.__name__ = inner.__name__
    return parse


def _as_field_type(convert: Callable[[str], Any], tp: type) -> Callable[[str], Any]:
    """``convert`` (a check, e.g. :func:`input_file`) whose result is cast back to the field's type."""

    def parse(text: str) -> Any:
        return tp(convert(text))

    parse.__name__ = getattr(convert, "__name__", tp.__name__)
    return parse


_FIELD_COMMENT = re.compile(r"^\s+(\w+)\s*:[^#]*#\s*(.+?)\s*$")


@functools.cache  # reading and parsing the source is most of a script's start-up otherwise
def field_comments(config_cls: type) -> dict[str, str]:
    """``{field: comment}`` from lines like ``max_steps: int = 1000  # optimizer steps`` in the class
    body (and its bases); empty when the source is unavailable."""
    comments: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            if match := _FIELD_COMMENT.match(line):
                comments[match.group(1)] = match.group(2)
    return comments


def add_config_arguments(
    parser: argparse.ArgumentParser,
    config_cls: type,
    prefix: str = "",
    types: dict[str, Callable[[str], Any]] | None = None,
) -> None:
    """Add one flag per field of ``config_cls`` (a dataclass) to ``parser``.

    ``types`` maps a field name to the ``type=`` of its flag (e.g. ``{"eval_task": input_file}``, so
    a missing file is refused when the command line is read); a ``str`` field named ``device`` is
    checked with :func:`device_name`.

    Defaults are left as ``argparse.SUPPRESS`` so that :func:`config_from_arguments` can tell the
    flags a user gave from the ones they did not (presets fill the rest).
    """
    hints = typing.get_type_hints(config_cls)
    comments = field_comments(config_cls)
    group = parser.add_argument_group(config_cls.__name__)
    for field in dataclasses.fields(config_cls):
        if not field.init:
            continue
        tp, optional = _unwrap_optional(hints[field.name])
        if dataclasses.is_dataclass(tp):
            continue  # nested configs get their own flags from the script
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = field.default_factory()  # type: ignore[misc]
        help_text = field.metadata.get("help") or comments.get(field.name, field.name.replace("_", " "))
        help_text = help_text.replace("%", "%%")  # argparse formats help strings
        help_text = f"{help_text} (default: {default!r})"
        flag = _flag(prefix + field.name)
        kwargs: dict[str, Any] = {
            "dest": prefix + field.name,
            "default": argparse.SUPPRESS,
            "help": help_text,
        }
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            kwargs["required"] = True  # a field without a default is a flag the user must give
            kwargs["help"] = help_text.replace(" (default: None)", " (required)")
        origin = typing.get_origin(tp)
        choices = None
        if origin is typing.Literal:
            choices = list(typing.get_args(tp))
            tp = type(choices[0])
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif origin in (tuple, list):
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            element = args[0] if args else str
            group.add_argument(flag, nargs="+", type=element, **kwargs)
        elif tp in _SCALARS:
            convert = (types or {}).get(field.name)
            if convert is None and field.name == "device" and tp is str and choices is None:
                convert = device_name
            convert = _as_field_type(convert, tp) if convert else tp
            group.add_argument(
                flag, type=_parse_optional(convert) if optional else convert, choices=choices, **kwargs
            )
        else:
            raise TypeError(f"{config_cls.__name__}.{field.name}: no CLI mapping for type {tp!r}")


def config_from_arguments(
    config_cls: type, args: argparse.Namespace, base: Any = None, prefix: str = ""
) -> Any:
    """Build ``config_cls`` from parsed flags; fields the user did not give come from ``base``
    (a preset instance) or the dataclass defaults."""
    hints = typing.get_type_hints(config_cls)
    given = {}
    for field in dataclasses.fields(config_cls):
        key = prefix + field.name
        if field.init and hasattr(args, key) and not dataclasses.is_dataclass(hints[field.name]):
            value = getattr(args, key)
            tp, _ = _unwrap_optional(hints[field.name])
            if typing.get_origin(tp) is tuple and value is not None:
                value = tuple(value)
            given[field.name] = value
    if base is not None:
        return dataclasses.replace(base, **given)
    return config_cls(**given)


def positive_int(text: str) -> int:
    """``type=`` for a flag that counts something (>= 1); argparse turns the error into one line."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """``type=`` for a flag that may be 0 (e.g. "0 = none") but never negative."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """``type=`` for a flag that is a finite number > 0 (``nan``, ``inf`` and ``0`` are refused)."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def probability(text: str) -> float:
    """``type=`` for a level or fraction strictly between 0 and 1 (``nan`` is refused)."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


# Paths are checked when the command line is read, so a mistyped name stops the run before any work
# (and before anything is written); argparse names the flag in the one-line error.


def input_file(text: str) -> Path:
    """``type=`` for a file the script reads: it must exist and be a file."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a folder, not a file: {text}")
    return path


def input_dir(text: str) -> Path:
    """``type=`` for a folder the script reads: it must exist and be a folder."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"is a file, not a folder: {text}")
    return path


def _blocking_file(path: Path) -> Path | None:
    """The first existing non-folder among ``path``'s parents (a folder cannot be made below it)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def output_dir(text: str) -> Path:
    """``type=`` for a folder the script writes (created later): not a file, nor below one."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"is a file, not a folder: {text}")
    if blocking := _blocking_file(path):
        raise argparse.ArgumentTypeError(f"{blocking} is a file, so {text} cannot be a folder")
    return path


def output_file(text: str) -> Path:
    """``type=`` for a file the script writes: not a folder, nor below a file."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a folder, not a file: {text}")
    if blocking := _blocking_file(path):
        raise argparse.ArgumentTypeError(f"{blocking} is a file, so {text} cannot be written")
    return path


def device_name(text: str) -> str:
    """``type=`` for a torch device (``cpu``, ``cuda``, ``cuda:1``, ``mps``) or ``auto``."""
    import torch

    if text != "auto":
        try:
            torch.device(text)
        except (RuntimeError, ValueError):
            raise argparse.ArgumentTypeError(f"not a torch device: {text!r}") from None
    return text


def check_positive(config: Any, zero_ok: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` naming the first number field of ``config`` (a dataclass; each element of
    a tuple field) that is not a finite number > 0 (>= 0 for the fields in ``zero_ok``). ``None``,
    bools, strings and nested configs are skipped. For configs whose numbers are all sizes and counts
    (the benchmarks): call it from ``__post_init__``."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, bool) or not isinstance(item, int | float):
                continue
            low_ok = item >= 0 if field.name in zero_ok else item > 0
            if not (math.isfinite(item) and low_ok):
                bound = ">= 0" if field.name in zero_ok else "> 0"
                raise ValueError(
                    f"{type(config).__name__}.{field.name} must be finite and {bound}; got {value!r}"
                )


def check_names(name: str, given: Any, known: Any) -> None:
    """Raise ``ValueError`` when ``given`` (one name or a tuple of names; ``None`` passes) holds a
    name outside ``known``."""
    unknown = sorted(set((given,) if isinstance(given, str) else given or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown {name} {unknown}; choose from {', '.join(sorted(known))}")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors look like every other error of our scripts:
    one line, ``error: ...``, exit code 2 (instead of the usage block followed by the message)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# What a user can cause by what they typed or pointed at: a bad value (ValueError, which includes
# UnicodeDecodeError and json.JSONDecodeError), a missing/unreadable/misplaced file or folder
# (OSError: FileNotFoundError, PermissionError, IsADirectoryError, ...), a corrupt database, a
# missing optional package, a file that will not unpickle safely (torch.load(weights_only=True) refusing
# it). Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, ImportError, sqlite3.DatabaseError, MemoryError, pickle.UnpicklingError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(error).split()) or type(error).__name__


def run_main(main: Callable[[], int | None]) -> None:
    """Run a script's ``main`` and exit with its return code.

    A user error (see ``USER_ERRORS``) becomes one ``error: ...`` line on stderr and exit code 2; an
    exception with an ``exit_code`` attribute (e.g. ``basics.train.TrainingDiverged``: the input was
    fine but the job failed) is printed the same way and exits with that code; Ctrl-C exits 130.
    """
    try:
        code = main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:
        exit_code = getattr(error, "exit_code", None)
        if not isinstance(exit_code, int) and not isinstance(error, USER_ERRORS):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(exit_code if isinstance(exit_code, int) else 2)
    sys.exit(code or 0)
