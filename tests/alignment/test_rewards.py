"""Graders for the verifiable rewards: R1-Zero format and answer grading (equivalent forms, boxed answers,
format failures), and the GSM8K / MMLU answer parsers (alignment/rewards.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

FULL = {"format_reward": 1.0, "answer_reward": 1.0, "reward": 1.0}
WRONG = {"format_reward": 1.0, "answer_reward": 0.0, "reward": 0.0}
NO_FORMAT = {"format_reward": 0.0, "answer_reward": 0.0, "reward": 0.0}


def _reward(adapters, response, truth):
    out = adapters.run_r1_zero_reward_fn(response, truth)
    return {k: float(out[k]) for k in ("format_reward", "answer_reward", "reward")}


@pytest.mark.parametrize(
    "answer, truth",
    [
        ("4", "4"),
        ("1/2", "\\frac{1}{2}"),
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac{1}{2}", "0.5"),
        ("\\boxed{\\frac{3}{4}}", "0.75"),
        ("(x+1)^2", "x^2+2x+1"),
        ("x^2 + 2*x + 1", "(x+1)^2"),
        ("1,000", "1000"),
        (" 12 ", "12.0"),
        ("\\text{12}", "12"),
        ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ],
)
def test_r1_zero_equivalent_forms_earn_full_reward(adapters, answer, truth):
    response = f" some reasoning </think> <answer>{answer}</answer>"
    assert _reward(adapters, response, truth) == FULL


@pytest.mark.parametrize(
    "answer, truth",
    [("5", "4"), ("1/3", "0.5"), ("(x+1)^2", "x^2+1"), ("", "4"), ("\\boxed{7}", "8"), ("12", "1.2")],
)
def test_r1_zero_wrong_answers_keep_only_the_format_reward(adapters, answer, truth):
    assert _reward(adapters, f" hmm </think> <answer>{answer}</answer>", truth) == WRONG


@pytest.mark.parametrize(
    "response",
    [
        " 2+2=4 </think><answer>4</answer>",  # no space between the tags
        " 2+2=4 <answer>4</answer>",  # no </think>
        " 2+2=4 </think> <answer>4",  # unclosed answer
        "4",
        "",
    ],
)
def test_r1_zero_format_failures_earn_nothing(adapters, response):
    assert _reward(adapters, response, "4") == NO_FORMAT


def test_r1_zero_grades_the_last_answer(adapters):
    response = " first guess </think> <answer>3</answer> wait <answer>4</answer>"
    assert _reward(adapters, response, "4") == FULL
    assert _reward(adapters, response, "3") == WRONG


MMLU = {"subject": "math", "question": "2+2?", "options": ["3", "4", "5", "6"], "answer": "B"}


def test_addition_task_solutions_are_correct_and_verifiable(adapters):
    problems = adapters.get_addition_problems(200, 2, 7)
    assert len({p["question"] for p in problems}) == 200
    for p in problems:
        a, b = map(int, p["question"].split("+"))
        assert 10 <= a <= 99 and 10 <= b <= 99 and p["answer"] == str(a + b)
        assert p["prompt"].endswith("<think>") and p["question"] in p["prompt"]
        assert _reward(adapters, p["solution"], p["answer"]) == FULL
        assert _reward(adapters, p["solution"], str(a + b + 1)) == WRONG
    worked = {p["question"]: p["solution"] for p in adapters.get_addition_problems(8100, 2, 0)}
    assert worked["47+85"] == " 7+5=12, 4+8+1=13 </think> <answer>132</answer>"
    assert worked["10+10"] == " 0+0=0, 1+1=2 </think> <answer>20</answer>"


def test_sloppy_addition_solutions_drop_only_the_final_carry(adapters):
    problems = adapters.get_addition_problems(400, 2, 3, sloppy_fraction=1.0)
    wrong = 0
    for p in problems:
        a, b = map(int, p["question"].split("+"))
        if a + b >= 100:  # the answer line lacks the leading 1; the reasoning is intact
            assert p["solution"].endswith(f"<answer>{str(a + b)[1:]}</answer>")
            assert _reward(adapters, p["solution"], p["answer"]) == WRONG
            wrong += 1
        else:
            assert _reward(adapters, p["solution"], p["answer"]) == FULL
    assert 100 < wrong < 300
    half = adapters.get_addition_problems(2000, 2, 3, sloppy_fraction=0.5)
    carries = [p for p in half if int(p["answer"]) >= 100]
    share = sum(_reward(adapters, p["solution"], p["answer"])["reward"] == 0 for p in carries) / len(carries)
    assert abs(share - 0.5) < 0.06
