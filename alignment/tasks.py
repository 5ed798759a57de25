"""A verifiable task a small model can learn on a CPU: multi-digit addition in the R1-Zero format.

The course's RL experiments use MATH/GSM8K with a 1.5B model on GPUs; this task keeps the same shape
(prompt ending in ``<think>``, reasoning, ``</think> <answer>...</answer>``, graded by
``alignment.rewards.r1_zero_reward_fn``) at a size that trains in minutes on two cores::

    prompt:   "User: 47+85\\nAssistant: <think>"
    response: " 7+5=12, 4+8+1=13 </think> <answer>132</answer>"

The reasoning adds the columns right to left, carrying into the next column. Simplification: the prompt
is a short version of ``alignment.rewards.R1_ZERO_PROMPT`` (the long system text would dominate the
sequence length of a byte-level model); pass ``template=R1_ZERO_PROMPT`` to use the full one.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHORT_R1_ZERO_PROMPT = "User: {question}\nAssistant: <think>"


@dataclass(frozen=True)
class Problem:
    question: str  # "47+85"
    answer: str  # "132"
    prompt: str  # the question in the R1-Zero template, ending with "<think>"
    solution: str  # a worked response in the R1-Zero format


def worked_addition(a: int, b: int) -> str:
    """Column-by-column reasoning for a + b: ``worked_addition(47, 85)`` ->
    ``" 7+5=12, 4+8+1=13 </think> <answer>132</answer>"``."""
    if a < 0 or b < 0:
        raise ValueError(f"worked_addition takes non-negative numbers, got {a} and {b}")
    xs, ys = str(a)[::-1], str(b)[::-1]
    steps, carry = [], 0
    for i in range(max(len(xs), len(ys))):
        x, y = int(xs[i]) if i < len(xs) else 0, int(ys[i]) if i < len(ys) else 0
        total = x + y + carry
        steps.append(f"{x}+{y}+{carry}={total}" if carry else f"{x}+{y}={total}")
        carry = total // 10
    return f" {', '.join(steps)} </think> <answer>{a + b}</answer>"


def sloppy_addition(a: int, b: int) -> str:
    """The worked solution of a careless annotator who drops the final carry from the answer line:
    ``sloppy_addition(47, 85)`` -> ``" 7+5=12, 4+8+1=13 </think> <answer>32</answer>"`` (the reasoning is
    right, so a verifier-driven learner can tell which answer line to trust)."""
    correct = worked_addition(a, b)
    total = str(a + b)
    if len(total) <= max(len(str(a)), len(str(b))):
        return correct  # no final carry: nothing to drop
    return correct.replace(f"<answer>{total}</answer>", f"<answer>{total[1:]}</answer>")


def make_addition_problems(
    count: int,
    digits: int = 2,
    seed: int = 0,
    template: str = SHORT_R1_ZERO_PROMPT,
    exclude: set[str] | None = None,
    sloppy_fraction: float = 0.0,
) -> list[Problem]:
    """``count`` distinct random problems with operands of exactly ``digits`` digits (``exclude``:
    questions to leave out, e.g. a held-out set). A ``sloppy_fraction`` of the worked solutions come from
    ``sloppy_addition`` (the ``answer`` field stays correct)."""
    if not 0.0 <= sloppy_fraction <= 1.0:
        raise ValueError(f"sloppy_fraction must be in [0, 1], got {sloppy_fraction}")
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    low, high = 10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1
    available = (high - low + 1) ** 2 - len(exclude or ())
    if count > available:
        raise ValueError(f"only {available} distinct {digits}-digit problems exist, asked for {count}")
    rng = random.Random(seed)
    seen = set(exclude or ())
    problems = []
    while len(problems) < count:
        a, b = rng.randint(low, high), rng.randint(low, high)
        question = f"{a}+{b}"
        if question in seen:
            continue
        seen.add(question)
        solution = sloppy_addition(a, b) if rng.random() < sloppy_fraction else worked_addition(a, b)
        problems.append(Problem(question, str(a + b), template.format(question=question), solution))
    return problems


def wrong_solution(problem: Problem, rng: random.Random) -> str:
    """A well-formatted response with a wrong final answer (a rejected response for DPO)."""
    answer = int(problem.answer)
    wrong = answer
    while wrong == answer or wrong < 0:
        wrong = answer + rng.choice([-10, -1, 1, 10, rng.randint(-99, 99)])
    head = problem.solution.split("<answer>")[0]
    return f"{head}<answer>{wrong}</answer>"


def truncated_answer(problem: Problem) -> str:
    """The worked solution with the answer's leading digit dropped -- shorter and wrong (``" 4+3=7,
    1+2=3 </think> <answer>7</answer>"`` for 12+43; a one-digit answer becomes empty)."""
    head = problem.solution.split("<answer>")[0]
    answer = problem.answer[1:] if len(problem.answer) > 1 else ""
    return f"{head}<answer>{answer}</answer>"


def concise_annotator_pairs(problems: list[Problem]) -> list[tuple[str, str, str]]:
    """Preference labels from a deliberately flawed annotator who always prefers the shorter answer:
    (prompt, chosen = ``truncated_answer``, rejected = the correct worked solution). A reward model
    trained on them learns "short is good" -- the flaw the PPO demo's reward hacking exploits."""
    return [(p.prompt, truncated_answer(p), p.solution) for p in problems]


def write_problems_jsonl(problems: list[Problem], path: str | Path) -> None:
    """One ``{"question", "answer", "prompt", "response"}`` object per line."""
    with Path(path).open("w") as f:
        for p in problems:
            f.write(
                json.dumps(
                    {"question": p.question, "answer": p.answer, "prompt": p.prompt, "response": p.solution}
                )
            )
            f.write("\n")


def addition_choice_records(problems: list[Problem], seed: int = 0) -> list[dict[str, Any]]:
    """The problems as a 4-way multiple-choice task in the HellaSwag format: the context is the prompt and
    the worked reasoning up to ``</think>``, the endings are answer lines, one right and three wrong (the
    dropped final carry when there is one, then off by 1 or 10), in a seeded random order::

        {"ctx": "User: 76+94\\nAssistant: <think> 6+4=10, 7+9+1=17 </think>",
         "endings": ["<answer>169</answer>", "<answer>70</answer>", ...], "label": 3}

    Scored by log-likelihood (``scripts/evaluate.py --multiple-choice``, or the lm-evaluation-harness with
    ``write_addition_choice_task``'s YAML), it asks which answer line the model finds most likely."""
    rng = random.Random(seed)
    records = []
    for p in problems:
        answer = int(p.answer)
        near = [answer + d for d in (1, -1, 10, -10) if answer + d >= 0]
        dropped = [int(p.answer[1:])] if len(p.answer) > len(p.question.split("+")[0]) else []
        wrong = (dropped + rng.sample(near, 3))[:3]
        choices = [answer, *wrong]
        rng.shuffle(choices)
        head = p.solution.split(" <answer>")[0]
        records.append(
            {
                "ctx": p.prompt + head,
                "endings": [f"<answer>{c}</answer>" for c in choices],
                "label": choices.index(answer),
            }
        )
    return records


def write_addition_choice_task(directory: str | Path, problems: list[Problem], seed: int = 0) -> Path:
    """``addition_choice.jsonl`` (``addition_choice_records``) and an lm-evaluation-harness task
    ``addition_choice.yaml`` reading it (``dataset_path: json``, a local data file) in ``directory``;
    returns the JSONL's path. Run the harness on it offline with ``scripts/lm_eval_harness.py
    --include_path DIRECTORY --tasks addition_choice``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "addition_choice.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in addition_choice_records(problems, seed)))
    yaml = [
        "task: addition_choice",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(data.resolve()))}",
        "test_split: test",
        "output_type: multiple_choice",
        'doc_to_text: "{{ctx}}"',
        'doc_to_choice: "{{endings}}"',
        'doc_to_target: "{{label}}"',
        "metric_list:",
        "  - metric: acc",
        "  - metric: acc_norm",
    ]
    (directory / "addition_choice.yaml").write_text("\n".join(yaml) + "\n")
    return data


def byte_tokenizer() -> Any:
    """Our ``Tokenizer`` with the 256 byte tokens and no merges (a character-level tokenizer for ASCII)
    plus ``<|endoftext|>`` as id 256."""
    from basics.tokenizer import ENDOFTEXT, Tokenizer

    vocab = {i: bytes([i]) for i in range(256)}
    vocab[256] = ENDOFTEXT.encode()
    return Tokenizer(vocab, [], [ENDOFTEXT])


# ----------------------------------------------------------------------------------------------------
# Task data for the stage scripts


@dataclass(frozen=True)
class TaskConfig:
    task: str = (
        "addition"  # "addition" (generated here) or a GSM8K-format JSONL file (question/answer "#### N")
    )
    eval_task: str | None = None  # GSM8K-format JSONL for held-out evaluation (None: split it off the task)
    digits: int = 2  # operand digits for the addition task
    train_size: int = 4000  # training questions
    eval_size: int = 300  # held-out questions
    full_prompt: bool = False  # use the full R1-Zero system prompt (default for GSM8K files)
    sloppy_fraction: float = 0.0  # share of addition SFT solutions whose answer line drops the final carry
    data_seed: int = 0  # data generation seed

    def __post_init__(self) -> None:
        from alignment.loop import check_config

        check_config(self, positive=("digits", "train_size", "eval_size"), unit_interval=("sloppy_fraction",))


@dataclass(frozen=True)
class TaskData:
    train: list[Problem]
    heldout: list[Problem]


def load_task(config: TaskConfig) -> TaskData:
    """Training and held-out problems for ``config`` (held-out questions never appear in training)."""
    from alignment.rewards import R1_ZERO_PROMPT

    if config.task == "addition":
        template = R1_ZERO_PROMPT if config.full_prompt else SHORT_R1_ZERO_PROMPT
        heldout = make_addition_problems(
            config.eval_size, config.digits, config.data_seed + 1_000_003, template
        )
        exclude = {p.question for p in heldout}
        train = make_addition_problems(
            config.train_size, config.digits, config.data_seed, template, exclude, config.sloppy_fraction
        )
        return TaskData(train, heldout)
    problems = read_gsm8k_problems(config.task)
    if config.eval_task is not None:
        return TaskData(
            problems[: config.train_size], read_gsm8k_problems(config.eval_task)[: config.eval_size]
        )
    if len(problems) <= config.eval_size:
        raise ValueError(
            f"{config.task}: {len(problems)} problems leave nothing to train on after {config.eval_size} held out"
        )
    random.Random(config.data_seed).shuffle(problems)
    return TaskData(problems[config.eval_size :][: config.train_size], problems[: config.eval_size])


def read_gsm8k_problems(path: str | Path) -> list[Problem]:
    """GSM8K-format JSONL as R1-Zero problems; the reasoning before ``####`` becomes the worked solution."""
    from alignment.jsonl import read_jsonl
    from alignment.rewards import R1_ZERO_PROMPT, gsm8k_ground_truth

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path} (use --task addition or a GSM8K-format JSONL)")
    problems = []
    for record in read_jsonl(path, {"question": str, "answer": str}, "GSM8K-format task"):
        where = f"{path}:{record['_line']}"
        answer = gsm8k_ground_truth(record["answer"], where)
        reasoning = record["answer"].split("####")[0].strip()
        prompt = R1_ZERO_PROMPT.format(question=record["question"])
        problems.append(
            Problem(record["question"], answer, prompt, f" {reasoning} </think> <answer>{answer}</answer>")
        )
    return problems
