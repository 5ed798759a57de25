"""The CLI fuzz grader: every script under ``scripts/`` meets a bad value with one line and exit 2.

For each script the grader reads its argparse parser (it imports the script and calls ``main`` with
``parse_known_args`` patched to hand the parser back, so nothing runs), then generates bad values from
each flag's type: ``abc`` and ``1.5`` for integers, ``abc``/``nan``/``inf``/``-1`` for floats, ``-1``
and ``0`` for counts, a value outside ``choices``, a missing file, a folder where a file is read, a
file where a folder is written, an unknown device. Each case must end with

* exit code 2,
* exactly one line on stderr, starting ``error:`` and naming the flag or the value,
* no traceback, and
* nothing left behind: the case runs in an empty working folder (default outputs land there) and its
  output paths point into it; afterwards the folder holds only what the grader put there.

Every case runs in this process, one grader per script (the scripts validate at the door, so a
refused case costs milliseconds; a case that is accepted starts the job and is stopped after
``SECONDS``). Each script gets ``ANCHORS``: arguments that make the run stop just after validation
(an input named in the error), so an unchecked value fails its case fast instead of training. Two
cases run as real processes (``python scripts/X.py ...``) in the default run; the ``slow`` sweep
runs, per script, one refused value and one bad path as real processes. A hypothesis grader feeds
every number flag arbitrary non-numbers.

Values a flag legitimately accepts (``--seed -1`` is a seed, ``generate --max-new-tokens 0``
prints the prompt) are listed in ``ACCEPTED`` with the reason. A count flag whose help text says
what 0 means (``(0: never)``, ``0 = off``), or which is in ``ZERO_OK``, accepts 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.grading import child_env

pytestmark = pytest.mark.extension

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py"))

FIXTURE_FILE = "afile.txt"  # every case folder holds this file ("hello\n") ...
FIXTURE_DIR = "adir"  # ... and this empty folder (both are bad values of the cases)
ANCHOR_FILE, ANCHOR_DIR = "anchor.txt", "anchor-dir"  # the same, for the anchors (distinct names, so
# an error about an anchor can never pass for one about the case's value)

# Scripts that are not driven (with the reason).
NOT_DRIVEN = {
    "lm_eval_harness": "hands every argument to the lm-evaluation-harness's own parser (its flags, its errors)",
}

LAB_REQUEST = ["--d-model", "64", "--num-layers", "2", "--num-heads", "4", "--batch-size", "8"]
LAB_REQUEST += ["--learning-rate", "0.01", "--train-flops", "1e9"]

# Arguments that make a run stop right after validation when the fuzzed value is accepted (a missing
# input named by the error), so an unchecked value fails the case fast instead of starting a job.
# ``{tmp}`` is the case's working folder. A fuzzed flag replaces its entry here.
ANCHORS: dict[str, list[str]] = {
    "bench_tokenizer": ["--input", "{tmp}/missing-corpus.txt"],
    "course_run": ["--out-dir", "{tmp}/out", "--warc", "{tmp}/missing-warcs"],
    "dpo": ["--init", "{tmp}/missing-policy.pt", "--out", "{tmp}/out"],
    "evaluate": ["--policy", "{tmp}/missing-policy.pt", "--output", "{tmp}/out/generations.jsonl"],
    "export_hf": ["{tmp}/missing-run", "--out-dir", "{tmp}/out"],
    "filter_cc": ["{tmp}/" + ANCHOR_DIR, "{tmp}/out"],
    "fit_isoflops": ["{tmp}/" + ANCHOR_FILE, "--out-dir", "{tmp}/out"],
    "generate": ["{tmp}/missing-run"],
    "grpo": ["--init", "{tmp}/missing-policy.pt", "--out", "{tmp}/out"],
    "make_assignment": ["a1", "{tmp}/out"],
    "ppo": [
        "--init",
        "{tmp}/missing-policy.pt",
        "--reward-model",
        "{tmp}/" + ANCHOR_FILE,
        "--out",
        "{tmp}/out",
    ],
    "reward_model": ["--init", "{tmp}/missing-policy.pt", "--out", "{tmp}/out"],
    "sft": ["--init", "{tmp}/missing-policy.pt", "--out", "{tmp}/out"],
    "train": ["--data", "{tmp}/missing-notes.txt", "--out-dir", "{tmp}/out"],
    "train_quality": [
        "--positives",
        "{tmp}/" + ANCHOR_FILE,
        "--negatives",
        "{tmp}/missing-neg.txt",
        "--out",
        "{tmp}/out/model.npz",
    ],
    "train_tokenizer": ["--input", "{tmp}/" + ANCHOR_FILE, "--out-dir", "{tmp}/out"],
    # a valid request; the ledger is a text file, which the lab refuses after checking the values
    "scaling_lab flops": [*LAB_REQUEST, "--db-path", "{tmp}/" + ANCHOR_FILE],
    "scaling_lab query": [*LAB_REQUEST, "--db-path", "{tmp}/" + ANCHOR_FILE],
    "scaling_lab sweep": ["--db-path", "{tmp}/" + ANCHOR_FILE],
    "scaling_lab predict": ["--db-path", "{tmp}/" + ANCHOR_FILE],
    "scaling_lab check": ["--db-path", "{tmp}/" + ANCHOR_FILE],
    "scaling_lab status": [],
}

# Path flags: what the script does with the path. "read" a file, "read_dir" a folder, "read_any" a
# file or a folder (a run directory or its checkpoint), "write" a file, "write_dir" a folder.
PATHS: dict[str, dict[str, str]] = {
    "bench_model": {"--trace-dir": "write_dir"},
    "bench_tokenizer": {"--input": "read"},
    "course_run": {"--out-dir": "write_dir", "--warc": "read_dir", "--cache-dir": "write_dir"},
    "dpo": {"--init": "read_any", "--out": "write_dir", "--eval-task": "read"},
    "evaluate": {
        "--policy": "read_any",
        "--gsm8k": "read",
        "--mmlu": "read",
        "--multiple-choice": "read",
        "--perplexity": "read",
        "--output": "write",
        "--eval-task": "read",
    },
    "export_hf": {"run": "read_any", "--out-dir": "write_dir", "--tokenizer-dir": "read_dir"},
    "filter_cc": {
        "input_dir": "read_dir",
        "out_dir": "write_dir",
        "--tokenizer-dir": "read_dir",
        "--language-model": "read",
        "--nsfw-model": "read",
        "--toxic-model": "read",
        "--quality-model": "read",
    },
    "fit_isoflops": {"runs": "read", "--out-dir": "write_dir"},
    "generate": {"run": "read_any", "--tokenizer-dir": "read_dir"},
    "grpo": {"--init": "read_any", "--out": "write_dir", "--eval-task": "read"},
    "make_assignment": {"out_dir": "write_dir"},
    "ppo": {"--init": "read_any", "--out": "write_dir", "--reward-model": "read_any", "--eval-task": "read"},
    "reward_model": {
        "--init": "read_any",
        "--out": "write_dir",
        "--pairs": "read",
        "--eval-pairs": "read",
        "--eval-task": "read",
    },
    "sft": {"--init": "read_any", "--out": "write_dir", "--eval-task": "read"},
    "train": {
        "--data": "read_any",
        "--tokenizer-dir": "read_dir",
        "--train-data": "read",
        "--val-data": "read",
        "--out-dir": "write_dir",
        "--cache-dir": "write_dir",
    },
    "train_quality": {"--positives": "read", "--negatives": "read", "--out": "write"},
    "train_tokenizer": {"--out-dir": "write_dir", "--input": "read", "--validation": "read"},
    "scaling_lab query": {"--db-path": "write", "--out-dir": "write_dir"},
    "scaling_lab sweep": {"--db-path": "write", "--out-dir": "write_dir", "--submission": "write"},
    "scaling_lab predict": {"--db-path": "read_ledger", "--out-dir": "write_dir", "--submission": "write"},
    "scaling_lab check": {"--db-path": "read_ledger", "--out-dir": "write_dir", "--submission": "read"},
    "scaling_lab flops": {"--db-path": "write", "--out-dir": "write_dir"},
    "scaling_lab status": {"--db-path": "read_ledger"},
}

# Flags that take names from a fixed list the parser does not know (checked by the config).
NAMES: dict[str, set[str]] = {
    "bench_attention": {"--dtypes"},
    "bench_ddp": {"--sections"},
    "bench_model": {"--sizes", "--precisions", "--impls"},
    "bench_parallel": {"--strategies"},
    "bench_rmsnorm": {"--dtype"},
}

# Values a flag accepts on purpose: (script or "*", flag, value) -> why.
ACCEPTED: dict[tuple[str, str, str], str] = {
    ("*", "--seed", "-1"): "any integer is a seed",
    ("*", "--data-seed", "-1"): "any integer is a seed",
    ("*", "--ei-seed", "-1"): "any integer is a seed",
    ("*", "--seed", "0"): "any integer is a seed",
    ("generate", "--max-new-tokens", "0"): "prints the prompt alone (SampleConfig allows 0)",
    ("*", "--lr-exponent", "-1"): "any finite exponent is a width rule (negative: wider models get more)",
    ("*", "--data-seed", "0"): "any integer is a seed",
    ("*", "--ei-seed", "0"): "any integer is a seed",
    ("*", "--crawl-seed", "-1"): "any integer is a seed",
    ("*", "--crawl-seed", "0"): "any integer is a seed",
}

# Flags whose help says nothing about 0 but where 0 means something (with the reason).
ZERO_OK: dict[str, str] = {
    "--warmup-steps": "no warm-up",
    "--warmup": "no untimed calls before timing",
    "--max-extra-sizes": "no size added when the best one sits at an edge",
}

SECONDS = 20  # an in-process case that runs longer has accepted its value and started the job


@dataclass(frozen=True)
class Case:
    script: str  # "train", or "scaling_lab sweep" for a subcommand
    flag: str  # "--learning-rate", or the positional's name
    value: str  # may contain {tmp}
    kind: str  # what is wrong: "not a number", "nan", "missing file", ...

    @property
    def id(self) -> str:
        return f"{self.script.replace(' ', ':')}:{self.flag}={self.value.replace('{tmp}/', '')}"

    def argv(self, tmp: Path, positionals: list[str]) -> list[str]:
        """The command line: the anchor arguments with this case's flag (re)placed."""
        anchor = [a.replace("{tmp}", str(tmp)) for a in ANCHORS.get(self.script, [])]
        value = self.value.replace("{tmp}", str(tmp))
        words = self.script.split()[1:]
        if not self.flag.startswith("-"):
            index = positionals.index(self.flag)
            anchor[index] = value
            return words + anchor
        if self.flag in anchor:
            at = anchor.index(self.flag)
            end = at + 1
            while end < len(anchor) and not anchor[end].startswith("--"):
                end += 1
            anchor = anchor[:at] + anchor[end:]
        return words + [self.flag, value] + anchor  # first: its error comes before the anchor's


# ---------------------------------------------------------------------------------------------------
# Reading the parsers


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


_MODULES: dict[str, object] = {}


def load_script(name: str):
    """Import ``scripts/<name>.py`` once (as ``_cli_fuzz_<name>``; ``__main__`` does not run)."""
    if name not in _MODULES:
        spec = importlib.util.spec_from_file_location(f"_cli_fuzz_{name}", ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses defined in the script look their module up
        spec.loader.exec_module(module)
        _MODULES[name] = module
    return _MODULES[name]


def script_parser(name: str) -> argparse.ArgumentParser:
    """The parser ``main`` builds, captured at its ``parse_known_args`` call (nothing else runs)."""

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    module = load_script(name)
    original, argv = argparse.ArgumentParser.parse_known_args, sys.argv
    argparse.ArgumentParser.parse_known_args = capture
    sys.argv = [f"{name}.py"]
    try:
        module.main()
    except _Captured as captured:
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_known_args, sys.argv = original, argv
    raise AssertionError(f"scripts/{name}.py: main() never parsed its arguments")


def parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(script, parser) for every driven script; a subcommand is a script of its own."""
    for name in SCRIPTS:
        if name in NOT_DRIVEN:
            continue
        parser = script_parser(name)
        subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subcommands:
            yield name, parser
        for action in subcommands:
            for command, sub in action.choices.items():
                yield f"{name} {command}", sub


def _number_kind(action: argparse.Action) -> str | None:
    name = getattr(action.type, "__name__", "")
    if name in ("int", "positive_int", "non_negative_int"):
        return "int"
    if name == "float":
        return "float"
    return None


def _zero_means_something(action: argparse.Action) -> bool:
    help_text = action.help or ""
    return bool(re.search(r"(\(|\b)0\s*(:|=|\bskips|\bmeans|\bfor\b)|0 = ", help_text)) or (
        getattr(action.type, "__name__", "") == "non_negative_int"
    )


def bad_values(script: str, action: argparse.Action) -> Iterator[tuple[str, str]]:
    """(value, what is wrong with it) for one flag."""
    flag = action.option_strings[0] if action.option_strings else action.dest
    path_kind = PATHS.get(script, {}).get(flag)
    if action.nargs == 0:
        return  # a switch takes no value
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        yield "no-such-choice", "unknown choice"
    elif path_kind in ("read", "read_any", "read_ledger"):
        yield "{tmp}/missing.jsonl", "missing file"
        if path_kind != "read_any":
            yield "{tmp}/" + FIXTURE_DIR, "a folder where a file is read"
        if path_kind == "read_ledger":
            yield "{tmp}/" + FIXTURE_FILE, "a text file where an SQLite ledger is read"
    elif path_kind == "read_dir":
        yield "{tmp}/missing-folder", "missing folder"
        yield "{tmp}/" + FIXTURE_FILE, "a file where a folder is read"
    elif path_kind == "write_dir":
        yield "{tmp}/" + FIXTURE_FILE + "/out", "a file where a folder is written"
    elif path_kind == "write":
        yield "{tmp}/" + FIXTURE_DIR, "a folder where a file is written"
    elif action.dest.endswith("device"):
        yield "bogus-device", "unknown device"
    elif flag in NAMES.get(script, ()):
        yield "no-such-name", "unknown name"
    number = _number_kind(action)
    if number == "int":
        yield "abc", "not a number"
        yield "1.5", "not an integer"
        yield "-1", "negative"
        if not _zero_means_something(action) and flag not in ZERO_OK:
            yield "0", "zero"
    elif number == "float":
        yield "abc", "not a number"
        yield "nan", "nan"
        yield "inf", "infinite"
        yield "-1", "negative"


def _accepted(case: Case) -> str | None:
    return ACCEPTED.get((case.script, case.flag, case.value)) or ACCEPTED.get(("*", case.flag, case.value))


def all_cases() -> list[Case]:
    cases = []
    for script, parser in parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            for value, kind in bad_values(script, action):
                case = Case(script, flag, value, kind)
                if _accepted(case) is None:
                    cases.append(case)
    return cases


def positional_names(script: str) -> list[str]:
    parser = dict(parsers_by_name())[script]
    return [
        a.dest
        for a in parser._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]


_PARSERS: list[tuple[str, argparse.ArgumentParser]] = []


def parsers_by_name() -> list[tuple[str, argparse.ArgumentParser]]:
    if not _PARSERS:
        _PARSERS.extend(parsers())
    return _PARSERS


# ---------------------------------------------------------------------------------------------------
# Running a case


@dataclass
class Outcome:
    code: int | str  # exit code, or "ran" when the job started (the value was accepted)
    stderr: str
    left_behind: list[str]

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


def prepare_folder(tmp: Path) -> None:
    for name in (FIXTURE_FILE, ANCHOR_FILE):
        (tmp / name).write_text("hello\n")
    for name in (FIXTURE_DIR, ANCHOR_DIR):
        (tmp / name).mkdir()


def left_behind(tmp: Path) -> list[str]:
    """Paths under ``tmp`` that the grader did not put there (or changed)."""
    found = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
    extra = [p for p in found if p not in (FIXTURE_FILE, FIXTURE_DIR, ANCHOR_FILE, ANCHOR_DIR)]
    for name in (FIXTURE_FILE, ANCHOR_FILE):
        if (tmp / name).is_file() and (tmp / name).read_text() != "hello\n":
            extra.append(name + " (changed)")
    return extra


class _TooLong(BaseException):
    pass


def _alarm(signum, frame):
    raise _TooLong


def run_in_process(case: Case, tmp: Path) -> Outcome:
    """``run_main(main)`` of the script with ``sys.argv`` set, in ``tmp``; stderr captured."""
    import torch

    from basics.cli import run_main

    name = case.script.split()[0]
    module = load_script(name)
    argv = case.argv(tmp, positional_names(case.script))
    stderr = io.StringIO()
    code: int | str = 0
    old = (sys.argv, os.getcwd(), torch.get_num_threads(), signal.signal(signal.SIGALRM, _alarm))
    sys.argv = [f"scripts/{name}.py", *argv]
    os.chdir(tmp)
    signal.alarm(SECONDS)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            run_main(module.main)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if isinstance(stop.code, str):
            stderr.write(stop.code + "\n")
    except _TooLong:
        code = "ran"
    except BaseException:  # noqa: BLE001  a traceback is what the grader reports
        code = 1
        stderr.write(traceback.format_exc())
    finally:
        signal.alarm(0)
        sys.argv = old[0]
        os.chdir(old[1])
        torch.set_num_threads(old[2])
        signal.signal(signal.SIGALRM, old[3])
    return Outcome(code, stderr.getvalue(), left_behind(tmp))


def run_subprocess(case: Case, tmp: Path, timeout: float = 120) -> Outcome:
    name = case.script.split()[0]
    argv = case.argv(tmp, positional_names(case.script))
    env = child_env()
    env["HF_HUB_OFFLINE"] = env["HF_DATASETS_OFFLINE"] = "1"
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *argv],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        code: int | str = done.returncode
        stderr = done.stderr
    except subprocess.TimeoutExpired as expired:
        code, stderr = "ran", (expired.stderr or b"").decode(errors="replace")
    return Outcome(code, stderr, left_behind(tmp))


def _names(case: Case) -> list[str]:
    """Words an error about this case may use: the flag (dashes or underscores, without a config
    prefix), the value, and the value's file name."""
    flag = case.flag.lstrip("-")
    words = {flag, flag.replace("-", "_")}
    for prefix in ("model-", "ei-"):
        if flag.startswith(prefix):
            words |= {flag[len(prefix) :], flag[len(prefix) :].replace("-", "_")}
    value = case.value.replace("{tmp}/", "")
    if case.kind not in ("negative", "zero"):  # "0" and "-1" appear in too many messages
        words |= {value, Path(value).name}
    return [w for w in words if w]


def problems(case: Case, outcome: Outcome) -> list[str]:
    """What is wrong with how the script met the case (empty: it did it right)."""
    found = []
    if outcome.code != 2:
        found.append(f"exit code {outcome.code}, want 2")
    if "Traceback" in outcome.stderr:
        found.append("traceback")
    if len(outcome.lines) != 1 or not outcome.lines[0].startswith("error:"):
        found.append(f"stderr is {len(outcome.lines)} lines, want one 'error: ...' line")
    elif not any(word.lower() in outcome.lines[0].lower() for word in _names(case)):
        found.append(f"the error names neither {case.flag} nor {case.value!r}")
    if outcome.left_behind:
        found.append(f"left behind: {outcome.left_behind}")
    return found


def report(case: Case, outcome: Outcome) -> str:
    first = outcome.lines[0] if outcome.lines else ""
    return f"{case.id} -> {outcome.code}: {first[:200]}\n" + (
        outcome.stderr[-3000:] if "Traceback" in outcome.stderr else ""
    )


# ---------------------------------------------------------------------------------------------------
# Graders

CASES = all_cases()


def test_every_script_is_driven_or_excused():
    """Each script is fuzzed (its parser found, bad values generated) or listed with a reason."""
    driven = {case.script.split()[0] for case in CASES}
    for name in SCRIPTS:
        assert name in driven or name in NOT_DRIVEN, f"scripts/{name}.py: no case generated"
    assert set(NOT_DRIVEN) <= set(SCRIPTS), "NOT_DRIVEN names a script that is gone"


def test_every_script_goes_through_run_main():
    """The ``__main__`` block calls ``run_main(main)`` (the one place errors become one line)."""
    for name in SCRIPTS:
        if name in NOT_DRIVEN:
            continue
        source = (ROOT / "scripts" / f"{name}.py").read_text()
        assert "run_main(main)" in source.split('if __name__ == "__main__":')[-1], name


def test_exceptions_are_still_needed():
    """Every entry of PATHS/ANCHORS names a flag the script still has (the lists only describe
    what exists)."""
    known = dict(parsers_by_name())
    for script, flags in PATHS.items():
        assert script in known, script
        names = {a.option_strings[0] if a.option_strings else a.dest for a in known[script]._actions}
        assert set(flags) <= names, f"{script}: {set(flags) - names}"
    assert set(ANCHORS) <= set(known), set(ANCHORS) - set(known)
    for script, flags in NAMES.items():
        names = {a.option_strings[0] for a in known[script]._actions if a.option_strings}
        assert flags <= names, f"{script}: {flags - names}"
    every_flag = {a.option_strings[0] for _, p in known.items() for a in p._actions if a.option_strings}
    for script, flag, _ in ACCEPTED:
        assert flag in every_flag and (script == "*" or script in known), (script, flag)
    assert set(ZERO_OK) <= every_flag, set(ZERO_OK) - every_flag


BY_SCRIPT = sorted({case.script for case in CASES})


@pytest.mark.parametrize("script", BY_SCRIPT, ids=lambda s: s.replace(" ", ":"))
def test_bad_values_are_one_line_and_exit_2(script: str, tmp_path: Path):
    """Every case of one script, in this process (one grader per script keeps the run short)."""
    failures = []
    for number, case in enumerate(c for c in CASES if c.script == script):
        folder = tmp_path / str(number)
        folder.mkdir()
        prepare_folder(folder)
        outcome = run_in_process(case, folder)
        if found := problems(case, outcome):
            failures.append(report(case, outcome) + "  " + "; ".join(found))
    assert not failures, f"{len(failures)} bad values not refused in one line:\n" + "\n".join(failures)


NUMBER_FLAGS = sorted(
    {
        (script, a.option_strings[0])
        for script, parser in parsers_by_name()
        for a in parser._actions
        if a.option_strings and _number_kind(a)
    }
)


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return not text.startswith("-")  # "-x" reads as a flag, a different mistake
    return False


@settings(max_examples=150, deadline=None)
@given(
    flag=st.sampled_from(NUMBER_FLAGS),
    text=st.text(min_size=1, max_size=12).filter(_not_a_number),
)
def test_number_flags_refuse_any_non_number_at_parse_time(flag, text):
    """Whatever text a number flag gets that is not a number, the parser says so in one line."""
    script, option = flag
    parser = dict(parsers_by_name())[script]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as stop:
        parser.parse_args([option, text])
    assert stop.value.code == 2
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr.getvalue()
    assert option in lines[0]


# A sample as real processes: the process exits 2, prints one line, and leaves nothing behind.
SAMPLE = [
    Case("train", "--learning-rate", "nan", "nan"),
    Case("filter_cc", "out_dir", "{tmp}/" + FIXTURE_FILE + "/out", "a file where a folder is written"),
]


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: c.id)
def test_bad_value_in_a_real_process(case: Case, tmp_path: Path):
    assert case in CASES
    prepare_folder(tmp_path)
    outcome = run_subprocess(case, tmp_path)
    assert not problems(case, outcome), report(case, outcome) + "\n".join(problems(case, outcome))


def _family(case: Case) -> str:
    if case.value.startswith("{tmp}"):
        return "path"
    if case.kind in ("unknown choice", "unknown name", "unknown device"):
        return "name"
    return "parse" if case.kind in ("not a number", "not an integer") else "value"


def sweep_sample() -> list[Case]:
    """Per script, the first case of two families of mistakes: a value refused by a check or a
    config (nan, inf, -1, 0), and a path. (What the parser refuses -- "abc" for a number, an unknown
    choice -- is the parser's one line in any process: the in-process and hypothesis graders cover
    it.)"""
    seen, chosen = set(), []
    for case in CASES:
        if _family(case) in ("value", "path") and (case.script, _family(case)) not in seen:
            seen.add((case.script, _family(case)))
            chosen.append(case)
    return chosen


@pytest.mark.slow
@pytest.mark.parametrize("case", sweep_sample(), ids=lambda c: c.id)
def test_bad_value_sweep_in_real_processes(case: Case, tmp_path: Path):
    prepare_folder(tmp_path)
    outcome = run_subprocess(case, tmp_path)
    assert not problems(case, outcome), report(case, outcome) + "\n".join(problems(case, outcome))


# ---------------------------------------------------------------------------------------------------
# Files whose contents are wrong (the flags are fine): still one line, exit 2, nothing run


def test_an_hf_folder_with_pickled_weights_is_refused_not_unpickled(tmp_path: Path):
    """A local Hugging Face folder whose weights are a pickle (``pytorch_model.bin``) is one error
    line; the pickle is never loaded (it would run code)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models

    folder = tmp_path / "hf"
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    marker = tmp_path / "code-ran"
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."  # pickle: os.system(...)
    (folder / "pytorch_model.bin").write_bytes(payload)
    letters = Tokenizer(models.BPE(vocab={chr(97 + i): i for i in range(26)}, merges=[]))
    transformers.PreTrainedTokenizerFast(tokenizer_object=letters, eos_token="z").save_pretrained(folder)
    case = Case("evaluate", "--policy", str(folder), "pickled weights")
    outcome = run_in_process(case, tmp_path)
    assert not marker.exists(), "the pickle ran"
    assert outcome.code == 2 and len(outcome.lines) == 1, report(case, outcome)
    assert outcome.lines[0].startswith("error:") and str(folder) in outcome.lines[0]


def test_a_vocabulary_smaller_than_asked_is_reported(tmp_path: Path):
    """``train.py --vocab-size`` larger than the corpus can give trains a smaller tokenizer and says so
    (with the size it got), instead of silently keeping an embedding table of unused rows."""
    text = "\n\n".join(f"paragraph {i}: the cat sat on the mat." for i in range(40))
    (tmp_path / "notes.txt").write_text(text)
    module = load_script("train")
    argv = ["--data", str(tmp_path / "notes.txt"), "--cache-dir", str(tmp_path / "cache")]
    argv += ["--vocab-size", "5000", "--prepare-only", "--out-dir", str(tmp_path / "run")]
    stdout, old = io.StringIO(), sys.argv
    sys.argv = ["scripts/train.py", *argv]
    try:
        with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as stop:
            from basics.cli import run_main

            run_main(module.main)
    finally:
        sys.argv = old
    assert stop.value.code in (0, None)
    said = [line for line in stdout.getvalue().splitlines() if "5,000" in line or "5000" in line]
    assert said and re.search(r"only \d", said[0]), stdout.getvalue()
