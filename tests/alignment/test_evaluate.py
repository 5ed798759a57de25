"""Graders for sampling and evaluation: completions cut at EOS/stop strings for each model kind (against a
plain greedy loop), the Wilson interval, GSM8K/MMLU loading, and the evaluation harness's JSONL output."""

from __future__ import annotations

import json

import pytest
import torch

from tests.alignment.tiny import BigramLM, CharTokenizer, hf_char_tokenizer, tiny_hf_model

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def chain_model(tok: CharTokenizer, transitions: dict[str, str]) -> BigramLM:
    """A bigram model that (almost surely) follows ``transitions``; "$" stands for EOS."""
    model = BigramLM(tok.vocab_size)
    with torch.no_grad():
        model.table.zero_()
        for src, dst in transitions.items():
            model.table[tok.index[src], tok.eos_id if dst == "$" else tok.index[dst]] = 30.0
    return model


def greedy_reference(model, ids: list[int], steps: int, eos: int) -> list[int]:
    out = []
    x = torch.tensor([ids])
    for _ in range(steps):
        logits = model(x)
        logits = logits.logits if hasattr(logits, "logits") else logits
        nxt = int(logits[0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        x = torch.cat([x, torch.tensor([[nxt]])], dim=1)
    return out


def test_sample_completions_eos_stop_and_order(adapters):
    tok = CharTokenizer()
    model = chain_model(tok, {"a": "b", "b": "c", "c": "$", "x": "<", "<": "/", "/": ">", ">": "z", "z": "z"})
    prompts = ["a", "zzx", "ab", "a"]  # different lengths, results must come back in order
    out = adapters.run_sample_completions(model, tok, prompts, max_new_tokens=8, temperature=1.0, stop=["/>"])
    assert out == ["bc", "</>", "c", "bc"]
    out = adapters.run_sample_completions(model, tok, ["x"], max_new_tokens=3, temperature=0.0)
    assert out == ["</>"]  # max_new_tokens respected


@pytest.mark.parametrize("kind", ["hf", "ours"])
def test_sample_completions_greedy_matches_plain_loop(adapters, kind):
    if kind == "hf":
        tok, model = hf_char_tokenizer(), tiny_hf_model(CharTokenizer().vocab_size, seed=3)
    else:
        tok = CharTokenizer()
        model = adapters.get_transformer_lm(tok.vocab_size, 64, 32, 2, 4, 64, seed=3).eval()
    char = CharTokenizer()
    prompts = ["hello", "what is 3+4?", "hi"]
    out = adapters.run_sample_completions(model, tok, prompts, max_new_tokens=7, temperature=0.0)
    with torch.no_grad():
        expected = [char.decode(greedy_reference(model, char.encode(p), 7, char.eos_id)) for p in prompts]
    assert out == expected


def test_sampling_follows_the_distribution(adapters):
    tok = CharTokenizer()
    model = BigramLM(tok.vocab_size)
    with torch.no_grad():
        model.table.fill_(-1e9)
        model.table[tok.index["a"], tok.index["b"]] = 0.0  # p(b) = 3/4, p(c) = 1/4
        model.table[tok.index["a"], tok.index["c"]] = -float(torch.log(torch.tensor(3.0)))
    out = adapters.run_sample_completions(model, tok, ["a"] * 2000, max_new_tokens=1, temperature=1.0, seed=1)
    share_b = sum(o == "b" for o in out) / len(out)
    assert abs(share_b - 0.75) < 0.04  # 4 standard errors
    cold = adapters.run_sample_completions(model, tok, ["a"] * 200, max_new_tokens=1, temperature=0.05)
    assert all(o == "b" for o in cold)


def test_wilson_interval_known_values(adapters):
    # textbook values of the 95% Wilson score interval
    assert adapters.run_wilson_interval(45, 100) == pytest.approx((0.3561, 0.5476), abs=1e-4)
    assert adapters.run_wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert adapters.run_wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    with pytest.raises(ValueError):
        adapters.run_wilson_interval(1, 0)


def test_load_gsm8k_and_mmlu(adapters, tmp_path):
    gsm = tmp_path / "gsm8k.jsonl"
    gsm.write_text(
        json.dumps({"question": "Q1?", "answer": "3 + 4 = 7\n#### 7"})
        + "\n"
        + json.dumps({"question": "Q2?", "answer": "so\n#### 1,200"})
        + "\n"
    )
    assert adapters.run_load_gsm8k(gsm) == [
        {"question": "Q1?", "answer": "7"},
        {"question": "Q2?", "answer": "1200"},
    ]
    with pytest.raises(FileNotFoundError):
        adapters.run_load_gsm8k(tmp_path / "missing.jsonl")
    for header in ("", "question,A,B,C,D,answer\n"):
        mmlu = tmp_path / "algebra_test.csv"
        mmlu.write_text(header + '"What is 2+2, really?",3,4,5,6,B\nx?,a,b,c,d,d\n')
        examples = adapters.run_load_mmlu(mmlu)
        assert [e["question"] for e in examples] == ["What is 2+2, really?", "x?"]
        assert examples[0]["options"] == ["3", "4", "5", "6"] and [e["answer"] for e in examples] == [
            "B",
            "D",
        ]
    bad = tmp_path / "bad.csv"
    bad.write_text("q,a,b,c\n")
    with pytest.raises(ValueError):
        adapters.run_load_mmlu(bad)


def test_evaluate_model_accuracy_and_jsonl(adapters, tmp_path):
    tok = CharTokenizer()
    # "a" -> " 4 </answer>"-like outputs are too long for a bigram chain; grade letters with the MMLU reward
    model = chain_model(tok, {"a": "b", "b": "$", "c": "d", "d": "$", "e": "e"})
    prompts = ["The correct answer is a", "The correct answer is c", "The correct answer is e"]
    truths = ["B", "B", "A"]
    out = tmp_path / "gen" / "out.jsonl"
    result = adapters.run_evaluate_model(model, tok, prompts, truths, adapters.get_mmlu_reward_fn(), 4, out)
    # responses "b" (-> B, right), "d" (-> D, wrong), "eeee" (no letter)
    assert result["n"] == 3 and result["accuracy"] == pytest.approx(1 / 3)
    assert result["format_rate"] == pytest.approx(2 / 3)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(adapters.run_wilson_interval(1, 3))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["response"] for r in records] == ["b", "d", "eeee"]
    assert [r["reward"] for r in records] == [1.0, 0.0, 0.0] and records[0]["ground_truth"] == "B"


def test_sampled_evaluator_is_reproducible_and_follows_the_model(adapters):
    tok = CharTokenizer()
    model = BigramLM(tok.vocab_size)
    with torch.no_grad():
        model.table.fill_(-1e9)
        model.table[tok.index["a"], tok.index["b"]] = (
            0.0  # "b" (right) with p = 1/2, "d" (wrong) with p = 1/2
        )
        model.table[tok.index["a"], tok.index["d"]] = 0.0
        model.table[:, tok.eos_id] = 0.0
        model.table[tok.index["a"], tok.eos_id] = -1e9
    prompts, truths = ["The correct answer is a"] * 400, ["B"] * 400
    evaluate = adapters.get_sampled_evaluator(tok, prompts, truths, adapters.get_mmlu_reward_fn(), 1, 1.0, 7)
    first, second = evaluate(model), evaluate(model)
    assert first == second  # the same random stream each call
    assert abs(first["heldout_accuracy"] - 0.5) < 0.1
    with torch.no_grad():
        model.table[tok.index["a"], tok.index["d"]] = -1e9
    assert evaluate(model)["heldout_accuracy"] == 1.0


def test_load_task_addition_and_gsm8k_files(adapters, tmp_path):
    train, heldout = adapters.run_load_task("addition", 50, 200)
    assert len(train) == 200 and len(heldout) == 50
    assert not {p["question"] for p in train} & {p["question"] for p in heldout}
    path = tmp_path / "gsm.jsonl"
    path.write_text(
        "".join(
            json.dumps({"question": f"What is {i} doubled?", "answer": f"{i} * 2 = {2 * i}\n#### {2 * i:,}"})
            + "\n"
            for i in range(600, 620)
        )
    )
    train, heldout = adapters.run_load_task(str(path), 5, 100)
    assert len(train) == 15 and len(heldout) == 5
    for p in train + heldout:
        i = int(p["question"].split()[2])
        assert (
            p["answer"] == str(2 * i)
            and p["prompt"].endswith("Assistant: <think>")
            and p["question"] in p["prompt"]
        )
        assert p["solution"] == f" {i} * 2 = {2 * i} </think> <answer>{2 * i}</answer>"
    with pytest.raises(FileNotFoundError):
        adapters.run_load_task(str(tmp_path / "missing.jsonl"), 5, 10)
