"""Verifiable rewards: the R1-Zero format reward with a math-equivalence grader, and answer parsers for
GSM8K-style and MMLU-style outputs.

Follows DeepSeek-AI 2025 (R1-Zero prompt and rewards) and the course's alignment handout. A prompt ends
with ``"Assistant: <think>"``; a response earns the format reward only if it contains ``"</think> <answer>"``
and ``"</answer>"``; the text after the last ``<answer>`` (with a ``\\boxed{...}`` unwrapped) is graded
against the ground truth:

    r1_zero_reward_fn(" 2+2=4 </think> <answer>4</answer>", "4")
    -> {"format_reward": 1.0, "answer_reward": 1.0, "reward": 1.0}

Equivalence is checked in three steps, cheapest first: string normalisation (spaces, ``$``, ``\\text{}``,
``\\dfrac``, thousands separators, a trailing period), numeric comparison, then symbolic comparison with
``math-verify`` (LaTeX and plain expressions, e.g. 1/2 = \\frac{1}{2} = 0.5) and ``sympy`` (simplify(a - b)
== 0, e.g. (x+1)^2 = x^2+2x+1).

Simplification: math-verify's timeouts rely on ``signal.alarm``, so they are used on the main thread only;
elsewhere expressions are parsed without a timeout.
"""

from __future__ import annotations

import math
import re
import threading
from typing import Any

R1_ZERO_PROMPT = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process in the mind and then provides the User with "
    "the answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>.\nUser: {question}\nAssistant: <think>"
)


# ----------------------------------------------------------------------------------------------------
# Answer extraction and normalisation


def extract_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, else None."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0:
        rest = text[start + len("\\boxed") :].strip()  # "\boxed 5"
        return rest.split()[0] if rest else None
    depth = 0  # nested braces: "\boxed{\frac{1}{2}}" ends at the brace that brings depth back to 0
    for i in range(brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[brace + 1 : i]
    return None


def normalize_answer(answer: str) -> str:
    """A canonical string: no spaces, ``$``, ``\\text{}``/``\\mathrm{}`` wrappers, ``\\left``/``\\right``,
    thousands separators or trailing period; ``\\dfrac``/``\\tfrac`` -> ``\\frac``."""
    s = answer.strip()
    boxed = extract_boxed(s)
    if boxed is not None:
        s = boxed
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}", r"\1", s)
    for old, new in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", "")):
        s = s.replace(old, new)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("$", "")
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", s)  # 1,000 -> 1000 (repeated below for 1,000,000)
    s = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", s)
    s = s.rstrip(".")
    if s.startswith("\\frac") and re.fullmatch(r"\\frac(\d)(\d)", s):  # \frac12 -> \frac{1}{2}
        s = f"\\frac{{{s[5]}}}{{{s[6]}}}"
    return s


def _as_number(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        pass
    match = re.fullmatch(r"(-?\d+)/(\d+)", s) or re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}", s)
    if match is None:
        return None
    if len(match.groups()) == 3:
        sign, num, den = match.groups()
        value = float(num) / float(den) if float(den) else None
        return -value if (value is not None and sign) else value
    num, den = match.groups()
    return float(num) / float(den) if float(den) else None


def _math_verify_equal(a: str, b: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError:
        return False
    # math_verify's timeouts use signals, which only the main thread may set: elsewhere, none.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    try:
        for left, right in ((a, b), (f"${a}$", f"${b}$")):  # as plain text, then as LaTeX math
            gold, pred = parse(left, parsing_timeout=timeout), parse(right, parsing_timeout=timeout)
            if gold and pred and verify(gold, pred, timeout_seconds=timeout):
                return True
    except Exception:  # a parser failure means "not shown equal", never a crash in the reward
        return False
    return False


def _sympy_equal(a: str, b: str) -> bool:
    try:
        import sympy
        from sympy.parsing.sympy_parser import (
            convert_xor,
            implicit_multiplication_application,
            parse_expr,
            standard_transformations,
        )
    except ImportError:
        return False
    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)
    try:
        left = parse_expr(a, transformations=transformations, evaluate=True)
        right = parse_expr(b, transformations=transformations, evaluate=True)
        return bool(sympy.simplify(left - right) == 0)  # equal as expressions, e.g. 2x+2 and 2(x+1)
    except Exception:  # unparsable input is simply not equivalent
        return False


def grade_answer(given: str, ground_truth: str) -> bool:
    """Whether ``given`` is mathematically equivalent to ``ground_truth`` (see the module docstring)."""
    a, b = normalize_answer(given), normalize_answer(ground_truth)
    if not a:
        return False
    # Cheapest first: string equality, then numbers (0.5 vs 1/2), then symbolic equivalence.
    if a == b or a.lower() == b.lower():
        return True
    x, y = _as_number(a), _as_number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)
    if len(a) > 200:  # very long answers are not worth a symbolic comparison
        return False
    return _math_verify_equal(a, b) or _sympy_equal(a, b)


# ----------------------------------------------------------------------------------------------------
# Reward functions


def r1_zero_reward_fn(response: str, ground_truth: str | list[str] | int | float) -> dict[str, float]:
    """R1-Zero reward: format 1 iff ``"</think> <answer>"`` and ``"</answer>"`` appear; answer 1 iff the
    text after the last ``<answer>`` (boxed unwrapped) matches ``ground_truth`` (or one of a list)."""
    if "</think> <answer>" not in response or "</answer>" not in response:
        return {"format_reward": 0.0, "answer_reward": 0.0, "reward": 0.0}
    answer = response.split("<answer>")[-1].split("</answer>")[0]  # the last answer block counts
    boxed = extract_boxed(answer)
    if boxed is not None:
        answer = boxed
    truths = ground_truth if isinstance(ground_truth, (list, tuple)) else [ground_truth]
    correct = any(grade_answer(answer, str(t)) for t in truths)
    return {"format_reward": 1.0, "answer_reward": float(correct), "reward": float(correct)}


def parse_gsm8k_response(text: str) -> str | None:
    """The last number in ``text`` with thousands separators removed ("... so $1,234." -> "1234"), else None."""
    # Integers with thousands separators, decimals, and ".5"-style decimals, optionally negative.
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+", text)
    if not numbers:
        return None
    number = numbers[-1].replace(",", "")
    return number.rstrip(".") or None


def gsm8k_ground_truth(answer_field: str, where: str = "GSM8K") -> str:
    """The final answer after ``####`` in a GSM8K ``answer`` field, thousands separators removed
    (``where`` -- e.g. ``file:line`` -- starts the error message)."""
    if "####" not in answer_field:
        raise ValueError(f"{where}: the answer has no '#### <final answer>' marker")
    final = answer_field.split("####")[-1].strip().replace(",", "")
    if not final:
        raise ValueError(f"{where}: nothing after the '####' marker")
    return final


def gsm8k_reward_fn(response: str, ground_truth: str) -> dict[str, float]:
    """1 when the last number in the response equals the ground truth numerically (no format reward)."""
    parsed = parse_gsm8k_response(response)
    correct = parsed is not None and grade_answer(parsed, ground_truth)
    return {
        "format_reward": float(parsed is not None),
        "answer_reward": float(correct),
        "reward": float(correct),
    }


def parse_mmlu_response(example: dict[str, Any], text: str) -> str | None:
    """The letter in "The correct answer is B" (case-insensitive phrase; letter must be one of the
    example's options), or the whole response when it is a single valid letter; else None."""
    options = example.get("options")
    count = len(options) if options is not None else 4
    letters = "ABCDEFGHIJ"[:count]
    match = re.findall(r"correct answer is[:\s]*\(?\s*([A-J])\b", text, flags=re.IGNORECASE)
    if match:
        letter = match[-1].upper()
        return letter if letter in letters else None
    stripped = text.strip().rstrip(".").strip("()")
    if len(stripped) == 1 and stripped.upper() in letters:
        return stripped.upper()
    return None
