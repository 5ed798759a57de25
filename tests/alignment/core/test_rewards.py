"""Graders for the verifiable rewards: R1-Zero format and answer grading (equivalent forms, boxed answers,
format failures), and the GSM8K / MMLU answer parsers (alignment/rewards.py)."""


from __future__ import annotations

import pytest

pytestmark = pytest.mark.core


FULL = {"format_reward": 1.0, "answer_reward": 1.0, "reward": 1.0}


WRONG = {"format_reward": 1.0, "answer_reward": 0.0, "reward": 0.0}


NO_FORMAT = {"format_reward": 0.0, "answer_reward": 0.0, "reward": 0.0}


def _reward(adapters, response, truth):
    out = adapters.run_r1_zero_reward_fn(response, truth)
    return {k: float(out[k]) for k in ("format_reward", "answer_reward", "reward")}


MMLU = {"subject": "math", "question": "2+2?", "options": ["3", "4", "5", "6"], "answer": "B"}


@pytest.mark.points(1, problem="parse_gsm8k_response")
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Natalia sold 48 + 24 = 72 clips. #### 72", "72"),
        ("He pays $1,234.", "1234"),
        ("The total is -3.5 dollars, not 7", "7"),
        ("so the answer is 0.25", "0.25"),
        ("It costs 1,000,000 in total", "1000000"),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_parse_gsm8k_response(adapters, text, expected):
    assert adapters.run_parse_gsm8k_response(text) == expected


@pytest.mark.points(1, problem="parse_mmlu_response")
@pytest.mark.parametrize(
    "text, expected",
    [
        ("The correct answer is B", "B"),
        ("Let me think. The correct answer is D.", "D"),
        ("the correct answer is (c)", "C"),
        ("The correct answer is E", None),  # not one of the four options
        ("I do not know", None),
        ("", None),
    ],
)
def test_parse_mmlu_response(adapters, text, expected):
    assert adapters.run_parse_mmlu_response(MMLU, text) == expected
