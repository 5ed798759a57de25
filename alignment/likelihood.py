"""Scoring text by log-likelihood: multiple-choice benchmarks (HellaSwag, ARC, MMLU) and the perplexity of
a file with a sliding window -- the evaluations the lm-evaluation-harness runs, done here by hand.

Multiple choice (Zellers et al. 2019; Clark et al. 2018; Hendrycks et al. 2021, as scored by the
lm-evaluation-harness): each item is a context and n choices; the model's answer is the choice whose
continuation it finds most likely,

    ll_i = sum_j log p(c_ij | context, c_i1..c_i(j-1))      acc: argmax_i ll_i      acc_norm: argmax_i ll_i / len(choice_i)

where ``acc_norm`` divides by the choice's length in characters, so long choices are not punished for
having more tokens. The continuation is ``" " + choice`` (the harness's target delimiter). Worked
example: lls [-4.0, -6.0] for choices "no" and "certainly" give acc picking 0 and acc_norm picking 1
(-2.0 vs -0.67).

Fast path: all choices of an item share the context, so our ``TransformerLM`` encodes the context
once into a KV cache, copies the cache for each choice and runs every continuation in one batch; other
models score the full sequences in one batch. ``continuation_log_likelihood_reference`` is the plain
version (one full forward per choice) that the graders compare against.

Perplexity: the tokens of a file, preceded by EOS (the document separator our models train with), are
scored in windows of ``window`` tokens that advance by ``stride``; every token is scored exactly once,
with at least ``window - stride`` tokens of context once the first window is full (HF's recipe;
``stride = window`` gives the harness's disjoint windows).

Simplifications: no few-shot examples; HellaSwag's text clean-up (bracketed tags) is not applied; a
context longer than the model's window keeps its last tokens (as the harness does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from alignment.interop import encode, eos_token_id, is_hf_model, model_device, model_logits
from alignment.jsonl import check_type, read_jsonl

Format = Literal["auto", "hellaswag", "arc", "mmlu"]


# ----------------------------------------------------------------------------------------------------
# Items


@dataclass(frozen=True)
class MultipleChoiceItem:
    context: str  # the text before the answer, e.g. "Question: ...\nAnswer:"
    choices: list[str]  # the answers, without the leading space
    gold: int  # index of the right choice


def _hellaswag(record: dict, where: str) -> MultipleChoiceItem:
    check_type(record["endings"], list, where, "endings")
    label = record["label"]
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    check_type(label, int, where, "label")
    context = f"{record['activity_label']}: {record['ctx']}" if "activity_label" in record else record["ctx"]
    return MultipleChoiceItem(context, list(record["endings"]), label)


def _arc(record: dict, where: str) -> MultipleChoiceItem:
    choices = record["choices"]
    check_type(choices, dict, where, "choices")
    for key in ("text", "label"):
        if key not in choices:
            raise ValueError(f"{where}: 'choices' needs 'text' and 'label' lists")
        check_type(choices[key], list, where, f"choices.{key}")
    if record["answerKey"] not in choices["label"]:
        raise ValueError(f"{where}: answerKey {record['answerKey']!r} is not one of {choices['label']}")
    gold = choices["label"].index(record["answerKey"])
    return MultipleChoiceItem(f"Question: {record['question']}\nAnswer:", list(choices["text"]), gold)


def mmlu_context(question: str, choices: Sequence[str], subject: str | None = None) -> str:
    """The harness's MMLU prompt: the question, lettered options, then "Answer:" (choices are letters)."""
    head = (
        f"The following are multiple choice questions (with answers) about {subject}.\n\n" if subject else ""
    )
    options = "".join(f"\n{letter}. {text}" for letter, text in zip("ABCDEFGHIJ", choices))
    return f"{head}{question.strip()}{options}\nAnswer:"


def _mmlu(record: dict, where: str) -> MultipleChoiceItem:
    check_type(record["choices"], list, where, "choices")
    check_type(record["answer"], int, where, "answer")
    letters = list("ABCDEFGHIJ"[: len(record["choices"])])
    subject = record.get("subject", "").replace("_", " ") or None
    return MultipleChoiceItem(
        mmlu_context(record["question"], record["choices"], subject), letters, record["answer"]
    )


_FORMATS = {  # format -> (required keys with their JSON types, converter)
    "hellaswag": ({"ctx": str, "endings": list}, _hellaswag),
    "arc": ({"question": str, "choices": dict, "answerKey": str}, _arc),
    "mmlu": ({"question": str, "choices": list, "answer": int}, _mmlu),
}


def detect_format(record: dict) -> str:
    if "endings" in record:
        return "hellaswag"
    if "answerKey" in record:
        return "arc"
    if "choices" in record and "answer" in record:
        return "mmlu"
    raise ValueError(
        "cannot tell the format: expected HellaSwag (ctx/endings/label), ARC "
        "(question/choices/answerKey) or MMLU (question/choices/answer) keys"
    )


def load_multiple_choice(path: str | Path, format: Format = "auto") -> list[MultipleChoiceItem]:
    """Items of a HellaSwag-, ARC- or MMLU-format JSONL file (the Hugging Face datasets' fields)."""
    records = read_jsonl(path, {}, "multiple-choice")
    if format == "auto":
        try:
            format = detect_format(records[0])  # type: ignore[assignment]
        except ValueError as error:
            raise ValueError(f"{path}:{records[0]['_line']}: {error}") from None
    if format not in _FORMATS:
        raise ValueError(f"unknown multiple-choice format {format!r}; choose hellaswag, arc or mmlu")
    fields, convert = _FORMATS[format]
    items = []
    for record in records:
        where = f"{path}:{record['_line']}"
        for key, expected in {**fields, **({"label": object} if format == "hellaswag" else {})}.items():
            if key not in record:
                raise ValueError(f"{where}: missing key {key!r} for the {format} format")
            if expected is not object:
                check_type(record[key], expected, where, key)
        item = convert(record, where)
        if len(item.choices) < 2 or not all(isinstance(c, str) for c in item.choices):
            raise ValueError(f"{where}: needs at least two choices, all strings")
        if not 0 <= item.gold < len(item.choices):
            raise ValueError(
                f"{where}: gold index {item.gold} is out of range for {len(item.choices)} choices"
            )
        items.append(item)
    return items


# ----------------------------------------------------------------------------------------------------
# Log-likelihood of a continuation


def encode_request(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of (context, continuation), split as the harness does: encode the whole text and cut it
    where the context's own encoding ends (so a BPE merge across the boundary goes to the continuation).
    An empty context becomes the EOS token, so the first continuation token has something to follow."""
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    if whole[: len(ctx)] != ctx:  # the tokenizer merged across the boundary: score the pieces apart
        whole = ctx + encode(tokenizer, continuation)
    ctx, cont = whole[: len(ctx)], whole[len(ctx) :]
    if not cont:
        raise ValueError(f"continuation {continuation!r} encodes to no tokens")
    return (ctx or [eos_token_id(tokenizer)]), cont


def _max_length(model: Any) -> int:
    config = getattr(model, "config", None)
    for name in ("context_length", "max_position_embeddings", "n_positions"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return 2048


@torch.no_grad()
def continuation_log_likelihood_reference(
    model: Any, context_ids: list[int], continuation_ids: list[int]
) -> tuple[float, bool]:
    """(sum of log p(continuation | context), whether greedy decoding would produce it) from one forward
    over the whole sequence: the plain version."""
    ids = (context_ids + continuation_ids)[-(_max_length(model) + 1) :]
    logits = model_logits(model, torch.tensor([ids[:-1]], device=model_device(model)))[0].float()
    tail = logits[-len(continuation_ids) :]  # (cont, vocab): the positions that predict the continuation
    log_probs = torch.log_softmax(tail, dim=-1)
    target = torch.tensor(continuation_ids, device=tail.device)
    ll = float(log_probs.gather(-1, target[:, None]).sum())
    return ll, bool((tail.argmax(dim=-1) == target).all())


def _pad(rows: Sequence[list[int]], value: int, device: Any) -> Int[Tensor, "rows longest"]:
    out = torch.full((len(rows), max(map(len, rows))), value, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def _score_rows(logits: Float[Tensor, "rows seq vocab"], targets: Sequence[list[int]], starts: Sequence[int]):
    """For row i: the continuation ``targets[i]`` is predicted by positions starts[i] .. starts[i]+len-1."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (rows, seq, vocab), fp32 over the vocabulary
    out = []
    for i, (cont, start) in enumerate(zip(targets, starts)):
        rows = log_probs[i, start : start + len(cont)]  # (cont, vocab)
        target = torch.tensor(cont, device=rows.device)
        # log p(continuation) = sum of its tokens' log-probs; "greedy" if every token was the argmax.
        out.append((float(rows.gather(-1, target[:, None]).sum()), bool((rows.argmax(-1) == target).all())))
    return out


@torch.no_grad()
def _shared_context_cached(model: Any, context: list[int], continuations: Sequence[list[int]]):
    """Our TransformerLM: the context once into a KV cache, the cache copied per choice, the choices in
    one batch. Position j of a choice's forward predicts its token j + 1; the context's last logits its first."""
    device = model_device(model)
    cache = model.new_kv_cache()
    last = model(torch.tensor([context], device=device), kv_cache=cache)[:, -1:]  # (1, 1, vocab)
    n = len(continuations)
    for layer, (k, v) in enumerate(zip(cache.keys, cache.values)):  # (1, heads, max_seq, d) -> (n, ...)
        cache.keys[layer], cache.values[layer] = k.repeat(n, 1, 1, 1), v.repeat(n, 1, 1, 1)
    ids = _pad([c[:-1] or c[:1] for c in continuations], 0, device)  # (n, longest - 1); pads never read
    # (n, 1, vocab) predicts each choice's first token, then (n, longest - 1, vocab) the rest.
    logits = torch.cat([last.expand(n, 1, -1), model(ids, kv_cache=cache)], dim=1)
    return _score_rows(logits, continuations, [0] * n)


@torch.no_grad()
def _full_sequences(model: Any, requests: Sequence[tuple[list[int], list[int]]]):
    """Any model: each (context, continuation) as one right-padded row of a batch."""
    limit = _max_length(model) + 1
    rows = [(c + t)[-limit:] for c, t in requests]  # too long: drop the context's oldest tokens
    # A row's last token is only a target; right padding comes after every real token (causal: unseen).
    ids = _pad([r[:-1] for r in rows], 0, model_device(model))  # (n, longest - 1)
    logits = model_logits(model, ids)  # (n, longest - 1, vocab)
    # Position j predicts token j + 1, so the continuation (the last len(t) tokens) is predicted
    # from position len(row) - 1 - len(t) on.
    starts = [len(r) - 1 - len(t) for r, (_, t) in zip(rows, requests)]
    return _score_rows(logits, [t for _, t in requests], starts)


def continuation_log_likelihoods(
    model: Any, tokenizer: Any, requests: Sequence[tuple[str, str]], batch_size: int = 32
) -> list[tuple[float, bool]]:
    """(log-likelihood, is_greedy) of each (context, continuation) request, in order. Requests that
    share a context (the choices of one item, consecutive) reuse its KV cache on our model."""
    encoded = [encode_request(tokenizer, c, t) for c, t in requests]
    results: list[tuple[float, bool]] = [(0.0, False)] * len(encoded)
    cached = hasattr(model, "new_kv_cache") and not is_hf_model(model)
    start = 0
    while start < len(encoded):
        end = start + 1  # the run of requests with the same context, at most batch_size long
        while end < len(encoded) and end - start < batch_size and encoded[end][0] == encoded[start][0]:
            end += 1
        group = encoded[start:end]
        fits = len(group[0][0]) + max(len(t) for _, t in group) <= _max_length(model)
        if cached and fits:
            results[start:end] = _shared_context_cached(model, group[0][0], [t for _, t in group])
        else:
            results[start:end] = _full_sequences(model, group)
        start = end
    return results


# ----------------------------------------------------------------------------------------------------
# Multiple-choice accuracy


@dataclass(frozen=True)
class MultipleChoiceResult:
    n: int  # items
    acc: float  # share with argmax log-likelihood = gold
    acc_norm: float  # share with argmax log-likelihood / choice length in characters = gold
    acc_ci_low: float  # 95% Wilson interval of acc
    acc_ci_high: float
    log_likelihoods: list[list[float]]  # per item, per choice


def evaluate_multiple_choice(
    model: Any, tokenizer: Any, items: Sequence[MultipleChoiceItem], batch_size: int = 32
) -> MultipleChoiceResult:
    """acc and acc_norm of ``model`` on ``items`` (ties go to the first choice, as numpy's argmax)."""
    from alignment.evaluate import wilson_interval

    if not items:
        raise ValueError("no multiple-choice items to evaluate")
    requests = [(item.context, " " + choice) for item in items for choice in item.choices]
    flat = [ll for ll, _ in continuation_log_likelihoods(model, tokenizer, requests, batch_size)]
    lls, correct, correct_norm, i = [], 0, 0, 0
    for item in items:
        scores = flat[i : i + len(item.choices)]
        i += len(item.choices)
        lls.append(scores)
        normed = [s / len(c) for s, c in zip(scores, item.choices)]  # acc_norm: per character, not per token
        correct += max(range(len(scores)), key=lambda k: (scores[k], -k)) == item.gold
        correct_norm += max(range(len(normed)), key=lambda k: (normed[k], -k)) == item.gold
    low, high = wilson_interval(correct, len(items))
    return MultipleChoiceResult(len(items), correct / len(items), correct_norm / len(items), low, high, lls)


# ----------------------------------------------------------------------------------------------------
# Perplexity with a sliding window


def rolling_windows(num_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, first, end) chunks over positions 0..num_tokens-1 (position 0 is the EOS that starts the
    text): a chunk scores targets first..end-1 from the inputs begin..end-2, at most ``window`` of them.
    The first chunk scores ``window`` targets, each later one ``stride`` more, so every target is scored
    exactly once, with at least ``window - stride`` tokens of context after the first chunk."""
    if not 0 < stride <= window:
        raise ValueError(f"need 0 < stride <= window, got stride {stride} and window {window}")
    chunks, first = [], 1  # position 0 (EOS) is context only
    while first < num_tokens:
        end = min(first + (window if first == 1 else stride), num_tokens)
        chunks.append((max(0, end - 1 - window), first, end))
        first = end
    return chunks


@torch.no_grad()
def rolling_log_likelihood(
    model: Any,
    tokenizer: Any,
    text: str,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
) -> tuple[float, int]:
    """(sum of log p of every token of ``text``, number of tokens), scored in sliding windows."""
    window = min(window or _max_length(model), _max_length(model))
    stride = stride or window
    ids = [eos_token_id(tokenizer), *encode(tokenizer, text)]
    chunks = rolling_windows(len(ids), window, stride)
    total = 0.0
    for start in range(0, len(chunks), batch_size):
        batch = chunks[start : start + batch_size]
        inputs = [ids[begin : end - 1] for begin, _, end in batch]  # position p predicts token p + 1
        logits = model_logits(model, _pad(inputs, 0, model_device(model)))
        targets = [ids[first:end] for _, first, end in batch]
        starts = [first - 1 - begin for begin, first, _ in batch]
        total += sum(ll for ll, _ in _score_rows(logits, targets, starts))
    return total, len(ids) - 1


@dataclass(frozen=True)
class PerplexityResult:
    tokens: int  # tokens scored
    bytes: int  # UTF-8 bytes of the text
    nll_per_token: float  # mean negative log-likelihood, nats
    perplexity: float  # exp(nll_per_token)
    bits_per_byte: float  # total nll / (bytes * ln 2): comparable across tokenizers


def perplexity(
    model: Any, tokenizer: Any, text: str, window: int | None = None, stride: int | None = None
) -> PerplexityResult:
    """Perplexity of ``text`` under ``model`` with a sliding window (see the module docstring)."""
    if not text:
        raise ValueError("cannot compute the perplexity of an empty text")
    ll, tokens = rolling_log_likelihood(model, tokenizer, text, window, stride)
    n_bytes = len(text.encode("utf-8"))
    nll = -ll / tokens
    return PerplexityResult(tokens, n_bytes, nll, math.exp(min(nll, 700.0)), -ll / (n_bytes * math.log(2)))
