"""Evaluation harness: load GSM8K-style and MMLU-style data, build prompts, generate, grade, and report
accuracy with a 95% confidence interval; every generation can be written to a JSONL file.

Follows the course's alignment handout (evaluation sections). Data formats:

- GSM8K: JSONL lines ``{"question": ..., "answer": "... #### 72"}`` (the ground truth follows ``####``).
- MMLU: CSV rows ``question,A,B,C,D,answer`` (a header row with those names is optional; the original
  release has none).
- Our generated tasks (``alignment.tasks``): JSONL ``{"prompt": ..., "answer": ...}``.

The accuracy interval is Wilson's score interval, which stays inside [0, 1] and behaves at 0% and 100%:

    wilson_interval(45, 100) -> (0.356, 0.548)

Simplification: Hugging Face ``datasets`` is used only when a source is not a local file and
``from_hub=True`` is passed (and ``datasets`` is installed); nothing here downloads otherwise.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from alignment.interop import model_device
from alignment.jsonl import read_jsonl
from alignment.rewards import R1_ZERO_PROMPT, gsm8k_ground_truth, parse_mmlu_response
from alignment.sampling import sample_completions

MMLU_PROMPT = (
    "Answer the following multiple choice question about {subject}. Respond with a single sentence of the "
    'form "The correct answer is _", filling the blank with the letter corresponding to the correct '
    "answer (i.e., A, B, C or D).\n\nQuestion: {question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
)

RewardFn = Callable[[str, Any], dict[str, float]]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% for z = 1.96)."""
    if n <= 0:
        raise ValueError(f"need at least one trial for a confidence interval, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


# ----------------------------------------------------------------------------------------------------
# Data


def _hub(source: str, from_hub: bool, what: str) -> Any:
    if not from_hub:
        raise FileNotFoundError(
            f"{what} file not found: {source} (pass from_hub=True to load it with `datasets`)"
        )
    try:
        import datasets
    except ImportError as error:
        raise FileNotFoundError(
            f"{what} file not found: {source}, and `datasets` is not installed"
        ) from error
    return datasets


def load_gsm8k(source: str | Path, split: str = "test", from_hub: bool = False) -> list[dict[str, str]]:
    """GSM8K examples as ``{"question", "answer"}`` with ``answer`` the final number (from ``####``)."""
    path = Path(source)
    if path.is_file():
        records = read_jsonl(path, {"question": str, "answer": str}, "GSM8K")
    else:
        records = list(_hub(str(source), from_hub, "GSM8K").load_dataset(str(source), "main", split=split))
    examples = []
    for i, record in enumerate(records):
        where = f"{source}:{record['_line']}" if "_line" in record else f"{source}: record {i}"
        if "question" not in record or "answer" not in record:
            raise ValueError(f"{where}: needs 'question' and 'answer' keys")
        examples.append(
            {"question": record["question"], "answer": gsm8k_ground_truth(record["answer"], where)}
        )
    return examples


def load_mmlu(source: str | Path, subject: str | None = None) -> list[dict[str, Any]]:
    """MMLU examples from a CSV (``question,A,B,C,D,answer``) as ``{"subject", "question", "options",
    "answer"}``; the subject defaults to the file name without ``_test.csv``/``_dev.csv``."""
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"MMLU CSV file not found: {source}")
    subject = subject or path.stem.removesuffix("_test").removesuffix("_dev").replace("_", " ")
    examples = []
    with path.open(newline="") as f:
        for line_number, row in enumerate(csv.reader(f), 1):
            if line_number == 1 and [c.strip().lower() for c in row] == [
                "question",
                "a",
                "b",
                "c",
                "d",
                "answer",
            ]:
                continue
            if len(row) != 6:
                raise ValueError(
                    f"{path}:{line_number}: expected 6 columns (question,A,B,C,D,answer), got {len(row)}"
                )
            answer = row[5].strip().upper()
            if answer not in ("A", "B", "C", "D"):
                raise ValueError(f"{path}:{line_number}: answer must be A, B, C or D, got {row[5]!r}")
            examples.append({"subject": subject, "question": row[0], "options": row[1:5], "answer": answer})
    return examples


def load_task_jsonl(source: str | Path) -> list[dict[str, str]]:
    """Generated task data: JSONL with string ``prompt`` and ``answer`` keys."""
    records = read_jsonl(source, {"prompt": str, "answer": str}, "task")
    return [{k: v for k, v in r.items() if k != "_line"} for r in records]


def gsm8k_prompt(question: str, template: str = R1_ZERO_PROMPT) -> str:
    return template.format(question=question)


def mmlu_prompt(example: dict[str, Any]) -> str:
    a, b, c, d = example["options"]
    return MMLU_PROMPT.format(subject=example["subject"], question=example["question"], a=a, b=b, c=c, d=d)


def mmlu_reward_fn(response: str, ground_truth: str) -> dict[str, float]:
    """1 when the parsed letter equals the ground-truth letter; format reward for any valid letter."""
    letter = parse_mmlu_response({"options": ["A", "B", "C", "D"]}, response)
    correct = letter is not None and letter == ground_truth.strip().upper()
    return {
        "format_reward": float(letter is not None),
        "answer_reward": float(correct),
        "reward": float(correct),
    }


# ----------------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class EvalResult:
    n: int  # number of examples
    accuracy: float  # mean answer reward
    ci_low: float  # 95% Wilson interval of the accuracy
    ci_high: float
    format_rate: float  # mean format reward
    mean_response_chars: float  # average response length in characters

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def score_responses(
    responses: Sequence[str], ground_truths: Sequence[Any], reward_fn: RewardFn
) -> tuple[EvalResult, list[dict[str, float]]]:
    """Grade responses; returns the summary and the per-example reward dicts."""
    if len(responses) != len(ground_truths):
        raise ValueError(f"got {len(responses)} responses but {len(ground_truths)} ground truths")
    if not responses:
        raise ValueError("nothing to evaluate: no responses")
    scores = [reward_fn(r, g) for r, g in zip(responses, ground_truths)]
    correct = sum(int(float(s["answer_reward"]) > 0.5) for s in scores)
    low, high = wilson_interval(correct, len(scores))
    result = EvalResult(
        n=len(scores),
        accuracy=correct / len(scores),
        ci_low=low,
        ci_high=high,
        format_rate=sum(float(s.get("format_reward", 0.0)) for s in scores) / len(scores),
        mean_response_chars=sum(len(r) for r in responses) / len(responses),
    )
    return result, scores


def evaluate_model(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    ground_truths: Sequence[Any],
    reward_fn: RewardFn,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    stop: Sequence[str] = ("</answer>",),
    batch_size: int = 64,
    output_path: str | Path | None = None,
    generator: Any = None,
) -> EvalResult:
    """Generate a response per prompt (greedy by default), grade it, and optionally write one JSONL line
    per example: ``{"prompt", "response", "ground_truth", "format_reward", "answer_reward", "reward"}``."""
    responses = sample_completions(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
        batch_size=batch_size,
        generator=generator,
    )
    result, scores = score_responses(responses, ground_truths, reward_fn)
    if output_path is not None:
        path = Path(output_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            for prompt, response, truth, score in zip(prompts, responses, ground_truths, scores):
                record = {"prompt": prompt, "response": response, "ground_truth": truth}
                record.update({k: float(v) for k, v in score.items()})
                f.write(json.dumps(record) + "\n")
    return result


def make_evaluator(
    tokenizer: Any,
    prompts: Sequence[str],
    ground_truths: Sequence[Any],
    reward_fn: RewardFn,
    *,
    max_new_tokens: int,
    prefix: str = "heldout_",
    batch_size: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
) -> Callable[[Any], dict[str, float]]:
    """A callback ``model -> {prefix + "accuracy", prefix + "ci_low", ...}`` for the training loops'
    ``evaluate`` argument: greedy decoding by default, or sampling at ``temperature`` with a fixed seed
    (the same random stream every call, so successive evaluations differ only through the model)."""

    def evaluate(model: Any) -> dict[str, float]:
        generator = None
        if temperature > 0:
            generator = torch.Generator(device=model_device(model)).manual_seed(seed)
        result = evaluate_model(
            model,
            tokenizer,
            prompts,
            ground_truths,
            reward_fn,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            temperature=temperature,
            generator=generator,
        )
        return {prefix + k: float(v) for k, v in result.to_dict().items() if k != "n"}

    return evaluate


def make_rl_evaluator(
    tokenizer: Any,
    prompts: Sequence[str],
    ground_truths: Sequence[Any],
    reward_fn: RewardFn,
    *,
    max_new_tokens: int,
    temperature: float,
    seed: int = 12345,
) -> Callable[[Any], dict[str, float]]:
    """Held-out accuracy two ways: greedy (``heldout_*``) and sampled at the rollout ``temperature``
    (``heldout_sampled_*``, the quantity RL optimises), each with its 95% interval."""
    greedy = make_evaluator(tokenizer, prompts, ground_truths, reward_fn, max_new_tokens=max_new_tokens)
    sampled = make_evaluator(
        tokenizer,
        prompts,
        ground_truths,
        reward_fn,
        max_new_tokens=max_new_tokens,
        prefix="heldout_sampled_",
        temperature=temperature,
        seed=seed,
    )
    return lambda model: greedy(model) | sampled(model)
