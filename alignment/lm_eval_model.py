"""Our models inside the lm-evaluation-harness (Gao et al., EleutherAI): a model named ``lmfs``.

The harness asks a model three questions, each a list of requests, and does the rest (prompts,
few-shot examples, metrics):

- ``loglikelihood``: (context, continuation) -> (log p(continuation | context), is it the greedy text);
  multiple-choice tasks score each choice this way;
- ``loglikelihood_rolling``: a whole text -> its total log-likelihood (perplexity tasks);
- ``generate_until``: (context, {"until": [...], "max_gen_toks": N, ...}) -> the generated text, cut
  before the first stop string.

All three are answered by this unit's own code (``alignment.likelihood``, ``alignment.sampling``), so
the harness's scores equal our evaluator's on the same items (a grader checks it). Importing this module
registers the model; ``scripts/lm_eval_harness.py`` does that and hands its arguments to the harness:

    python scripts/lm_eval_harness.py --model lmfs --model_args path=runs/cpu --tasks my_task \\
        --include_path my_tasks/

``path`` is anything ``alignment.policy.load_any`` reads: a pretraining run directory, an alignment
policy file, or an exported Hugging Face folder.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from alignment.likelihood import continuation_log_likelihoods, rolling_log_likelihood
from alignment.policy import load_any
from alignment.sampling import sample_completions


def cut_at_stop(text: str, until: list[str]) -> str:
    """``text`` up to (not including) the earliest stop string, as the harness expects."""
    cuts = [text.find(s) for s in until if s and s in text]
    return text[: min(cuts)] if cuts else text


@register_model("lmfs")
class LMFromScratch(LM):
    """``--model lmfs --model_args path=RUN_DIR[,device=cpu,batch_size=32,max_gen_toks=256,threads=1]``.

    ``threads`` sets torch's CPU threads for the run (default: torch's own). On a busy CPU, one thread
    per process is far faster for small models: threads that wait for each other's cores spin (measured
    on a loaded 2-core machine: 45x the CPU time of one thread for the same requests)."""

    def __init__(
        self,
        path: str,
        device: str | None = "cpu",
        batch_size: int | str = 32,
        max_gen_toks: int = 256,
        threads: int | str | None = None,
        model: Any = None,
        tokenizer: Any = None,
        **_: Any,
    ):
        super().__init__()
        device = device or "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            # the harness asks for cuda:0 unless told otherwise; a CPU-only machine still runs
            warnings.warn(f"device {device!r} is not available here; using the CPU", stacklevel=2)
            device = "cpu"
        if threads is not None:
            if not str(threads).isdigit() or int(threads) < 1:
                raise ValueError(f"lmfs: threads must be a positive integer, got {threads!r}")
            torch.set_num_threads(int(threads))
        if model is None:
            model, tokenizer = load_any(path, device)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 32  # "auto" -> 32
        self.max_gen_toks = int(max_gen_toks)

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [tuple(request.args) for request in requests]
        # the harness sends the choices of an item one after another: keep them together for the cache
        with torch.no_grad():
            return continuation_log_likelihoods(self.model, self.tokenizer, pairs, self.batch_size)

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        out = []
        for request in tqdm(requests, disable=disable_tqdm, desc="rolling log-likelihood"):
            total, _ = rolling_log_likelihood(self.model, self.tokenizer, request.args[0])
            out.append(total)
        return out

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        out = []
        for request in tqdm(requests, disable=disable_tqdm, desc="generate"):
            context, kwargs = request.args
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            sample = bool(kwargs.get("do_sample", False))
            temperature = float(kwargs.get("temperature", 1.0)) if sample else 0.0
            text = sample_completions(
                self.model,
                self.tokenizer,
                [context],
                max_new_tokens=int(kwargs.get("max_gen_toks", self.max_gen_toks)),
                temperature=temperature,
                stop=until,
            )[0]
            out.append(cut_at_stop(text, until))
        return out
