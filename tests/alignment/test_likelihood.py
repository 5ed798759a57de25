"""Graders for log-likelihood evaluation: per-choice log-likelihoods (cached and batched) equal a plain loop
for our model and an HF one, acc / acc_norm on generated HellaSwag/ARC/MMLU-format files, perplexity with
a sliding window, and the lm-evaluation-harness (our model registered as ``lmfs``) giving the same scores
as our evaluator on a local task."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from pathlib import Path

import pytest
import torch

from tests.alignment.tiny import CharTokenizer, hf_char_tokenizer, reference_token_log_probs, tiny_hf_model

pytestmark = pytest.mark.extension


def _model(adapters, kind):
    char = CharTokenizer()
    if kind == "ours":
        return adapters.get_transformer_lm(char.vocab_size, 128, 32, 2, 4, 64, seed=7).eval(), char
    return tiny_hf_model(char.vocab_size, seed=7), hf_char_tokenizer()


def plain_log_likelihood(model, context: str, continuation: str) -> tuple[float, bool]:
    """One full forward over context + continuation (character ids), summing the continuation's log-probs."""
    char = CharTokenizer()
    ctx, cont = char.encode(context) or [char.eos_id], char.encode(continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        out = model(ids[:, :-1])
        logits = (out.logits if hasattr(out, "logits") else out)[0]
    token_lp = reference_token_log_probs(logits, ids[0, 1:])[len(ctx) - 1 :]
    greedy = bool((logits[len(ctx) - 1 :].argmax(-1) == ids[0, len(ctx) :]).all())
    return float(token_lp.sum()), greedy


@pytest.mark.parametrize("kind", ["ours", "hf"])
def test_continuation_log_likelihoods_match_a_plain_loop(adapters, kind):
    model, tok = _model(adapters, kind)
    requests = [
        ("Question: what is 2+2?\nAnswer:", " 4"),
        ("Question: what is 2+2?\nAnswer:", " four, of course"),
        ("Question: what is 2+2?\nAnswer:", " 5"),
        ("the cat sat on the", " mat"),
        ("", " hello"),  # an empty context is scored after EOS
        ("a", "b"),
    ]
    got = adapters.run_continuation_log_likelihoods(model, tok, requests, batch_size=2)
    for (context, continuation), (ll, greedy) in zip(requests, got):
        expected, expected_greedy = plain_log_likelihood(model, context, continuation)
        assert ll == pytest.approx(expected, rel=1e-4, abs=1e-4), (context, continuation)
        assert greedy == expected_greedy


def _items(rng: random.Random, count: int) -> list[dict]:
    """ARC-format records with choices of different lengths."""
    words = ["red", "blue", "a very long answer indeed", "no", "maybe so", "green tea", "x"]
    records = []
    for i in range(count):
        choices = rng.sample(words, 4)
        records.append(
            {
                "id": str(i),
                "question": f"which one is number {i}?",
                "choices": {"text": choices, "label": ["A", "B", "C", "D"]},
                "answerKey": "ABCD"[rng.randrange(4)],
            }
        )
    return records


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_load_multiple_choice_formats(adapters, tmp_path):
    hellaswag = _write(
        tmp_path / "hs.jsonl",
        [{"ctx": "He opens the door", "endings": [" and", " or", " but"], "label": "2"}],
    )
    assert adapters.run_load_multiple_choice(hellaswag) == [
        {"context": "He opens the door", "choices": [" and", " or", " but"], "gold": 2}
    ]
    arc = _write(tmp_path / "arc.jsonl", _items(random.Random(0), 1))
    item = adapters.run_load_multiple_choice(arc)[0]
    assert item["context"] == "Question: which one is number 0?\nAnswer:" and len(item["choices"]) == 4
    mmlu = _write(
        tmp_path / "mmlu.jsonl", [{"question": " 2+2? ", "choices": ["3", "4", "5", "6"], "answer": 1}]
    )
    assert adapters.run_load_multiple_choice(mmlu) == [
        {"context": "2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:", "choices": ["A", "B", "C", "D"], "gold": 1}
    ]
    for bad, complaint in (
        ({"question": "q", "choices": ["a", "b"], "answer": 5}, "out of range"),
        ({"question": "q", "choices": "ab", "answer": 0}, "'choices'"),
        ({"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "B"}, "answerKey"),
        ({"prompt": "q"}, "format"),
    ):
        path = _write(tmp_path / "bad.jsonl", [bad])
        with pytest.raises(ValueError) as error:
            adapters.run_load_multiple_choice(path)
        assert str(error.value).startswith(f"{path}:1:") and complaint in str(error.value)


@pytest.mark.parametrize("kind", ["ours", "hf"])
def test_multiple_choice_accuracy_equals_a_plain_loop(adapters, tmp_path, kind):
    model, tok = _model(adapters, kind)
    items = adapters.run_load_multiple_choice(_write(tmp_path / "arc.jsonl", _items(random.Random(1), 12)))
    result = adapters.run_evaluate_multiple_choice(model, tok, items)
    acc = acc_norm = 0
    for item, lls in zip(items, result["log_likelihoods"]):
        expected = [plain_log_likelihood(model, item["context"], " " + c)[0] for c in item["choices"]]
        assert lls == pytest.approx(expected, rel=1e-4, abs=1e-4)
        acc += expected.index(max(expected)) == item["gold"]
        normed = [ll / len(c) for ll, c in zip(expected, item["choices"])]  # per character of the choice
        acc_norm += normed.index(max(normed)) == item["gold"]
    assert result["acc"] == pytest.approx(acc / len(items))
    assert result["acc_norm"] == pytest.approx(acc_norm / len(items))


def test_acc_norm_divides_by_choice_length(adapters):
    tok = CharTokenizer()

    class Uniform(torch.nn.Module):  # every next token has probability 1/V: ll = -len(tokens) * ln V
        def forward(self, ids):
            return torch.zeros(*ids.shape, tok.vocab_size)

    item = {"context": "q", "choices": ["ab", "abcdefgh"], "gold": 1}
    result = adapters.run_evaluate_multiple_choice(Uniform(), tok, [item])
    # lls: -3 ln V (" ab") and -9 ln V (" abcdefgh"); acc picks 0, acc_norm compares -1.5 ln V with -1.125 ln V
    ln_v = math.log(tok.vocab_size)
    assert result["log_likelihoods"][0] == pytest.approx([-3 * ln_v, -9 * ln_v], rel=1e-5)
    assert result["acc"] == 0.0 and result["acc_norm"] == 1.0


@pytest.mark.parametrize("window, stride", [(8, 1), (8, 3), (8, 8), (64, 64)])
def test_perplexity_sliding_window(adapters, window, stride):
    model, tok = _model(adapters, "ours")
    char = CharTokenizer()
    text = "the quick brown fox jumps over the lazy dog, again and again."
    ids = [char.eos_id, *char.encode(text)]
    result = adapters.run_perplexity(model, tok, text, window, stride)
    assert result["tokens"] == len(ids) - 1
    # plain loop: tokens 1..window are scored with everything before them; after that, in chunks of
    # `stride` tokens, each chunk reading the `window` positions before its last token
    total = 0.0
    for i in range(1, len(ids)):
        if i <= window:
            begin = 0
        else:
            end = min(window + 1 + math.ceil((i - window) / stride) * stride, len(ids))
            begin = max(0, end - 1 - window)
        context = ids[begin:i]
        with torch.no_grad():
            logits = model(torch.tensor([context]))[0, -1]
        total += float(torch.log_softmax(logits.float(), -1)[ids[i]])
    assert result["nll_per_token"] == pytest.approx(-total / (len(ids) - 1), rel=1e-4)
    assert result["perplexity"] == pytest.approx(math.exp(-total / (len(ids) - 1)), rel=1e-4)
    assert result["bits_per_byte"] == pytest.approx(-total / (len(text.encode()) * math.log(2)), rel=1e-4)


def _task_yaml(directory, data_file) -> None:
    (directory / "lmfs_tiny_arc.yaml").write_text(
        "\n".join(
            [
                "task: lmfs_tiny_arc",
                "dataset_path: json",
                "dataset_kwargs:",
                "  data_files:",
                f"    test: {data_file}",
                "test_split: test",
                "output_type: multiple_choice",
                'doc_to_text: "Question: {{question}}\\nAnswer:"',
                'doc_to_choice: "{{choices.text}}"',
                'doc_to_target: "{{choices.label.index(answerKey)}}"',
                "metric_list:",
                "  - metric: acc",
                "  - metric: acc_norm",
                "",
            ]
        )
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ours", "hf"])
def test_lm_eval_harness_scores_equal_ours(adapters, tmp_path, kind):
    import lm_eval  # noqa: F401  (the optional `eval` extra; CI installs it: fail, do not skip)

    if kind == "ours":  # a policy file stores our byte tokenizer with the model
        tok = adapters.get_byte_tokenizer()
        model = adapters.get_transformer_lm(257, 128, 32, 2, 4, 64, seed=7).eval()
    else:
        model, tok = _model(adapters, kind)
    path = tmp_path / ("policy.pt" if kind == "ours" else "hf_model")
    adapters.run_save_policy(model, tok, path)
    data = _write(tmp_path / "arc.jsonl", _items(random.Random(2), 16))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    _task_yaml(tasks, data)
    out = tmp_path / "results"
    root = str(Path(__file__).resolve().parents[2])  # the tree under test, not an installed copy
    pythonpath = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    env["HF_DATASETS_CACHE"] = str(tmp_path / "hf")
    command = adapters.get_lm_eval_command() + [
        "--model", "lmfs", "--model_args", f"path={path}", "--tasks", "lmfs_tiny_arc",
        "--include_path", str(tasks), "--output_path", str(out), "--batch_size", "4",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    [results_file] = list(out.rglob("results*.json"))
    scores = json.loads(results_file.read_text())["results"]["lmfs_tiny_arc"]
    ours = adapters.run_evaluate_multiple_choice(model, tok, adapters.run_load_multiple_choice(data))
    assert scores["acc,none"] == pytest.approx(ours["acc"], abs=1e-9)
    assert scores["acc_norm,none"] == pytest.approx(ours["acc_norm"], abs=1e-9)


def test_addition_choice_task_has_one_right_answer_per_item(adapters, tmp_path):
    data = adapters.run_write_addition_choice_task(tmp_path, 60)
    assert "dataset_path: json" in (tmp_path / "addition_choice.yaml").read_text()
    items = adapters.run_load_multiple_choice(data, "hellaswag")
    assert len(items) == 60 and {item["gold"] for item in items} == {0, 1, 2, 3}  # the right answer moves
    for item in items:
        a, b = item["context"].split("User: ")[1].split("\n")[0].split("+")
        answers = [c.removeprefix("<answer>").removesuffix("</answer>") for c in item["choices"]]
        assert len(set(answers)) == 4 and answers[item["gold"]] == str(int(a) + int(b))
        assert (
            item["context"].endswith("</think>")
            and str(int(a) + int(b)) not in item["context"].split("<think>")[0]
        )


class _Request:
    """What the harness hands a model: an object whose ``args`` are the request's arguments."""

    def __init__(self, *args):
        self.args = args


def test_lm_eval_model_answers_the_three_request_kinds(adapters, tmp_path):
    tok = adapters.get_byte_tokenizer()
    model = adapters.get_transformer_lm(257, 128, 32, 2, 4, 64, seed=11).eval()
    adapters.run_save_training_run(model, tok, tmp_path / "run")
    lm = adapters.get_lm_eval_model(tmp_path / "run")  # a pretraining run directory
    requests = [("Question: 2+2?\nAnswer:", " 4"), ("Question: 2+2?\nAnswer:", " five"), ("the cat", " sat")]
    got = lm.loglikelihood([_Request(*r) for r in requests])
    expected = adapters.run_continuation_log_likelihoods(model, tok, requests)
    assert [g[0] for g in got] == pytest.approx([e[0] for e in expected], rel=1e-5)
    assert [g[1] for g in got] == [e[1] for e in expected]
    text = "a short text to score, twice as long as it needs to be."
    [rolling] = lm.loglikelihood_rolling([_Request(text)])
    ppl = adapters.run_perplexity(model, tok, text, 128, 128)
    assert rolling == pytest.approx(-ppl["nll_per_token"] * ppl["tokens"], rel=1e-5)
    [generated] = lm.generate_until([_Request("User: 1+1", {"until": ["e"], "max_gen_toks": 12})])
    [greedy] = adapters.run_sample_completions(model, tok, ["User: 1+1"], max_new_tokens=12, temperature=0.0)
    assert generated == greedy.split("e")[0]  # cut before the stop string
