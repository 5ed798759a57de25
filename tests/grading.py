"""The grading plugin: grade any implementation through the course's adapter functions, with points.

Loaded by ``tests/conftest.py`` (``pytest_plugins``); a student starter ships the same file. It adds:

* ``--adapters UNIT=SPEC`` (repeatable): grade another implementation. SPEC is a module name
  (``student_pkg.adapters``) or the path of an adapters file (``/path/to/repo/tests/adapters.py``);
  for a file, the repository root above its ``tests/`` folder goes first on ``sys.path``, so the
  student's own package imports. A module that does not import stops the run once, with one line.
* The ``adapters`` fixture: the adapters of the unit whose folder the test lives in, wrapped so that a
  missing function, or one that raises ``NotImplementedError``, *skips* the grader with
  ``not implemented: run_xxx`` (0 points) instead of erroring. Older course names are accepted
  (``compute_per_instance_dpo_loss`` for ``run_compute_per_instance_dpo_loss``). A ``core`` grader
  may call only the course's own adapter functions (``CONTRACT`` below); anything else is a grader
  bug and fails loudly.
* ``@pytest.mark.points(n, problem="...")`` on a core grader: ``n`` points for the problem, split
  evenly over the cases of a parametrized grader. ``--grade results.json`` prints a per-problem
  score table and writes Gradescope's ``results.json``; ``--junitxml`` records each grader's points
  and problem as properties.
* Hypothesis runs derandomized with no example database (the same examples on every machine).

Why hand-written: the Gradescope helpers on PyPI are unittest runners (gradescope-utils) or keep
their scores in per-process globals keyed by function (byu-pytest-utils), which loses the scores
under pytest-xdist and has no per-problem grouping; this file is ~300 lines of plain pytest hooks.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

UNITS = ("basics", "systems", "scaling", "data", "alignment")

# The course's adapter functions with their parameters, one block per release, newest first (see the
# README's "Graders" section). Core graders may call only these; our own extras are "extension"
# adapters. A starter's tests/adapters.py is written from these lines (scripts/make_assignment.py).
RELEASES: dict[str, dict[str, str]] = {
    "basics": {
        "2025": """
            run_linear(d_in, d_out, weights, in_features)
            run_embedding(vocab_size, d_model, weights, token_ids)
            run_swiglu(d_model, d_ff, w1_weight, w2_weight, w3_weight, in_features)
            run_scaled_dot_product_attention(Q, K, V, mask)
            run_multihead_self_attention(d_model, num_heads, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, in_features)
            run_multihead_self_attention_with_rope(d_model, num_heads, max_seq_len, theta, q_proj_weight, k_proj_weight, v_proj_weight, o_proj_weight, in_features, token_positions)
            run_rope(d_k, theta, max_seq_len, in_query_or_key, token_positions)
            run_transformer_block(d_model, num_heads, d_ff, max_seq_len, theta, weights, in_features)
            run_transformer_lm(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta, weights, in_indices)
            run_rmsnorm(d_model, eps, weights, in_features)
            run_silu(in_features)
            run_get_batch(dataset, batch_size, context_length, device)
            run_softmax(in_features, dim)
            run_cross_entropy(inputs, targets)
            run_gradient_clipping(parameters, max_l2_norm)
            get_adamw_cls()
            run_get_lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)
            run_save_checkpoint(model, optimizer, iteration, out)
            run_load_checkpoint(src, model, optimizer)
            get_tokenizer(vocab, merges, special_tokens)
            run_train_bpe(input_path, vocab_size, special_tokens, **kwargs)
        """,
        "2024": """
            run_positionwise_feedforward(d_model, d_ff, weights, in_features)
            run_scaled_dot_product_attention(K, Q, V, mask, pdrop)
            run_multihead_self_attention(d_model, num_heads, attn_pdrop, weights, in_features)
            run_transformer_block(d_model, num_heads, d_ff, attn_pdrop, residual_pdrop, weights, in_features)
            run_transformer_lm(vocab_size, context_length, d_model, num_layers, num_heads, d_ff, attn_pdrop, residual_pdrop, weights, in_indices)
            run_rmsnorm(d_model, eps, weights, in_features)
            run_gelu(in_features)
            run_get_batch(dataset, batch_size, context_length, device)
            run_softmax(in_features, dim)
            run_cross_entropy(inputs, targets)
            run_gradient_clipping(parameters, max_l2_norm)
            get_adamw_cls()
            run_get_lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)
            run_save_checkpoint(model, optimizer, iteration, out)
            run_load_checkpoint(src, model, optimizer)
            get_tokenizer(vocab, merges, special_tokens)
            run_train_bpe(input_path, vocab_size, special_tokens, **kwargs)
        """,
    },
    "systems": {
        "2026": """
            get_flashattention_autograd_function_pytorch()
            get_flashattention_autograd_function_triton()
            get_ddp(module)
            ddp_on_after_backward(ddp_model, optimizer)
            get_fsdp(module, compute_dtype)
            fsdp_on_after_backward(fsdp_model, optimizer)
            fsdp_gather_full_params(fsdp_model)
            get_sharded_optimizer(params, optimizer_cls, **kwargs)
        """,
        "2025": """
            get_flashattention_autograd_function_pytorch()
            get_flashattention_autograd_function_triton()
            get_ddp_individual_parameters(module)
            ddp_individual_parameters_on_after_backward(ddp_model, optimizer)
            get_ddp_bucketed(module, bucket_size_mb)
            ddp_bucketed_on_after_backward(ddp_model, optimizer)
            ddp_bucketed_on_train_batch_start(ddp_model, optimizer)
            get_sharded_optimizer(params, optimizer_cls, **kwargs)
        """,
        "2024": """
            get_rmsnorm_autograd_function_pytorch()
            get_rmsnorm_autograd_function_triton()
            rmsnorm_backward_g_pytorch(grad_output, x, g)
            rmsnorm_backward_x_pytorch(grad_output, x, g)
            get_ddp_individual_parameters(module)
            ddp_individual_parameters_on_after_backward(ddp_model, optimizer)
            get_ddp_bucketed(module, bucket_size_mb)
            ddp_bucketed_on_after_backward(ddp_model, optimizer)
            ddp_bucketed_on_train_batch_start(ddp_model, optimizer)
            get_sharded_optimizer(params, optimizer_cls, **kwargs)
        """,
    },
    # The course's scaling assignment has no adapters file: its core graders use the functions below,
    # the questions its handout asks (parameter and FLOP counts, IsoFLOPs fits).
    "scaling": {
        "ours": """
            run_transformer_parameter_count(vocab_size, context_length, d_model, num_layers, num_heads, d_ff)
            run_transformer_forward_flops(vocab_size, context_length, d_model, num_layers, num_heads, d_ff)
            run_fit_isoflops(records)
        """,
    },
    "data": {
        "2025": """
            run_extract_text_from_html_bytes(html_bytes)
            run_identify_language(text)
            run_mask_emails(text)
            run_mask_phone_numbers(text)
            run_mask_ips(text)
            run_classify_nsfw(text)
            run_classify_toxic_speech(text)
            run_classify_quality(text)
            run_gopher_quality_filter(text)
            run_exact_line_deduplication(input_files, output_directory)
            run_minhash_deduplication(input_files, num_hashes, num_bands, ngrams, jaccard_threshold, output_directory)
        """,
    },
    "alignment": {
        "2025": """
            run_tokenize_prompt_and_output(prompt_strs, output_strs, tokenizer)
            run_compute_group_normalized_rewards(reward_fn, rollout_responses, repeated_ground_truths, group_size, advantage_eps, normalize_by_std)
            run_compute_entropy(logits)
            run_get_response_log_probs(model, input_ids, labels, return_token_entropy)
            run_compute_naive_policy_gradient_loss(raw_rewards_or_advantages, policy_log_probs)
            run_compute_grpo_clip_loss(advantages, policy_log_probs, old_log_probs, cliprange)
            run_compute_policy_gradient_loss(policy_log_probs, loss_type, raw_rewards, advantages, old_log_probs, cliprange)
            run_masked_mean(tensor, mask, dim)
            run_sft_microbatch_train_step(policy_log_probs, response_mask, gradient_accumulation_steps, normalize_constant)
            run_grpo_microbatch_train_step(policy_log_probs, response_mask, gradient_accumulation_steps, loss_type, raw_rewards, advantages, old_log_probs, cliprange)
            run_masked_normalize(tensor, mask, dim, normalize_constant)
            get_packed_sft_dataset(tokenizer, dataset_path, seq_length, shuffle)
            run_iterate_batches(dataset, batch_size, shuffle)
            run_parse_mmlu_response(mmlu_example, model_output)
            run_parse_gsm8k_response(model_output)
            run_compute_per_instance_dpo_loss(lm, lm_ref, tokenizer, beta, prompt, response_chosen, response_rejected)
        """,
        "2024": """
            get_packed_sft_dataset(tokenizer, dataset_path, seq_length, shuffle)
            run_iterate_batches(dataset, batch_size, shuffle)
            run_parse_mmlu_response(mmlu_example, model_output)
            run_parse_gsm8k_response(model_output)
            compute_per_instance_dpo_loss(lm, lm_ref, tokenizer, beta, prompt, response_chosen, response_rejected)
        """,
    },
}  # fmt: skip


def release_signatures(unit: str, release: str) -> dict[str, list[str]]:
    """``{function: [parameter, ...]}`` of one release of a unit's contract (``**kwargs`` kept as is)."""
    signatures = {}
    for line in RELEASES[unit][release].split("\n"):
        if line.strip():
            name, _, rest = line.strip().partition("(")
            signatures[name] = [p.strip() for p in rest.rstrip(")").split(",") if p.strip()]
    return signatures


# Course names of other releases for the same function (same parameters and meaning).
ALIASES = {"run_compute_per_instance_dpo_loss": ("compute_per_instance_dpo_loss",)}

# Every name a core grader may call: all releases, less the older names served through ALIASES.
_OLD_NAMES = {old for olds in ALIASES.values() for old in olds}
CONTRACT: dict[str, frozenset[str]] = {
    unit: frozenset(name for release in releases for name in release_signatures(unit, release)) - _OLD_NAMES
    for unit, releases in RELEASES.items()
}


_added_paths: list[str] = []  # sys.path entries added for file adapters: children need them too


# ---------------------------------------------------------------------------------------- loading


def import_adapters(spec: str) -> ModuleType:
    """Import an adapters module from a module name or from the path of a ``.py`` file."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        path = path.resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no adapters file {spec}")
        root = str(next((p.parent for p in path.parents if p.name == "tests"), path.parent))
        if root not in _added_paths:
            _added_paths.insert(0, root)
        _paths_first()
        name = "_graded_adapters_" + "".join(c if c.isalnum() else "_" for c in str(path))
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    return importlib.import_module(spec)


def _paths_first() -> None:
    """Put the repositories of graded adapters files first on sys.path (pytest's own path handling may
    have moved them back), so their packages win over same-named ones of the graders' repository."""
    for root in reversed(_added_paths):
        while root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a grader's subprocess: this repository (and any student repository whose
    adapters file is graded) PREPENDED to PYTHONPATH, never replacing it."""
    root = str(Path(__file__).resolve().parents[1])
    existing = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = list(dict.fromkeys([*_added_paths, root, *existing]))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **extra}


def peak_resident_kib() -> int:
    """This process's peak resident memory in KiB, for memory graders run in a child process.

    Linux's ``VmHWM`` (the process's own address space), not ``ru_maxrss``: exec carries the spawning
    parent's high-water mark into ``ru_maxrss``, so a child of a big xdist worker would start "at peak"
    and any growth would read as zero."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def adapter_specs(config: pytest.Config) -> dict[str, str]:
    """UNIT -> adapters spec: the ``grading_adapters`` ini lines, then ``--adapters`` overrides."""
    specs = {}
    for line in config.getini("grading_adapters"):
        unit, _, spec = line.partition("=")
        specs[unit.strip()] = spec.strip()
    if not specs:
        specs = {unit: f"tests.{unit}.adapters" for unit in UNITS}
    for value in config.getoption("--adapters"):
        unit, sep, spec = value.partition("=")
        if not sep or not spec:
            raise pytest.UsageError(f"--adapters expects UNIT=MODULE_OR_FILE, got {value!r}")
        if unit not in specs:
            raise pytest.UsageError(f"--adapters: unknown unit {unit!r}; choose from {', '.join(specs)}")
        specs[unit] = spec
    return specs


def _load(config: pytest.Config, unit: str) -> ModuleType:
    spec = adapter_specs(config)[unit]
    try:
        return import_adapters(spec)
    except Exception as error:
        raise pytest.UsageError(f"cannot import the {unit} adapters {spec!r}: {_one_line(error)}") from None


# ---------------------------------------------------------------------------------------- the proxy


class Adapters:
    """An adapters module seen by a grader: missing or unimplemented functions skip the grader."""

    def __init__(self, module: ModuleType, unit: str, spec: str, core: bool):
        self._module, self._unit, self._core = module, unit, core
        self.__name__ = spec  # what a subprocess passes to import_adapters

    def _find(self, name: str) -> Any:
        for candidate in (name, *ALIASES.get(name, ())):
            if hasattr(self._module, candidate):
                return getattr(self._module, candidate)
        return None

    def provides(self, name: str) -> bool:
        """Whether the module defines ``name`` (or an older course name for it)."""
        return self._find(name) is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._core and self._unit in CONTRACT and name not in CONTRACT[self._unit]:
            pytest.fail(f"grader bug: a core grader called {name}, which is not a course adapter", False)
        function = self._find(name)
        if function is None:
            raise pytest.skip.Exception(f"not implemented: {name}", _use_item_location=True)
        if not callable(function):
            return function

        @functools.wraps(function)
        def call(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except NotImplementedError:
                raise pytest.skip.Exception(f"not implemented: {name}", _use_item_location=True) from None

        return call


def unit_of(config: pytest.Config, path: Path) -> str:
    specs = adapter_specs(config)
    try:
        relative = Path(path).resolve().relative_to(Path(config.rootpath) / "tests")
    except ValueError:
        relative = Path()
    if relative.parts and relative.parts[0] in specs:
        return relative.parts[0]
    if len(specs) == 1:
        return next(iter(specs))
    raise ValueError(f"{path} is not inside a unit folder (tests/<unit>/)")


def load_adapters(config: pytest.Config, unit: str, core: bool = False) -> Adapters:
    """The wrapped adapters of ``unit`` (for module-scoped fixtures; tests use ``adapters``)."""
    return Adapters(_load(config, unit), unit, adapter_specs(config)[unit], core)


@pytest.fixture
def adapters(request: pytest.FixtureRequest) -> Adapters:
    """The adapters of the unit whose folder the requesting test lives in."""
    core = (
        request.node.get_closest_marker("core") is not None
        and request.node.get_closest_marker("extension") is None
    )
    return load_adapters(request.config, unit_of(request.config, request.path), core)


def raises_any():
    """Where the handout only says "raise": any exception passes, except NotImplementedError (a stub
    is not a correct refusal; the grader is skipped as not implemented)."""
    return _RaisesAny()


class _RaisesAny:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            pytest.fail("expected an exception, none was raised", False)
        if issubclass(kind, NotImplementedError):
            raise pytest.skip.Exception("not implemented", _use_item_location=True)
        return issubclass(kind, Exception)


# ---------------------------------------------------------------------------------------- hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading")
    group.addoption(
        "--adapters",
        action="append",
        default=[],
        metavar="UNIT=SPEC",
        help="grade another implementation: UNIT's adapters from a module name or an adapters .py file "
        "(repeatable), e.g. --adapters basics=/path/to/repo/tests/adapters.py",
    )
    group.addoption(
        "--grade",
        metavar="RESULTS_JSON",
        default=None,
        help="print a per-problem score table and write Gradescope's results.json to this path",
    )
    parser.addini("grading_adapters", "UNIT=MODULE lines: each unit's default adapters", type="linelist")


def _selected_units(config: pytest.Config) -> list[str]:
    specs = adapter_specs(config)
    tests_dir = Path(config.rootpath) / "tests"
    args = [Path(a.split("::")[0]).resolve() for a in config.args] or [tests_dir]
    selected = []
    for unit in specs:
        folder = tests_dir / unit if (tests_dir / unit).is_dir() else tests_dir
        if any(folder == a or a in folder.parents or folder in a.parents for a in args):
            selected.append(unit)
    return selected


def pytest_configure(config: pytest.Config) -> None:
    try:
        from hypothesis import settings

        settings.register_profile("graders", derandomize=True, database=None, deadline=None)
        settings.load_profile("graders")
    except ImportError:
        pass
    # Import every adapters module this run will use now: a broken one stops the run here, once.
    for unit in _selected_units(config):
        _load(config, unit)
    if config.getoption("--grade") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Gradebook(config), "gradebook")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Attach points (split over a parametrized grader's cases) and problem as user properties."""
    cases: dict[tuple, list[pytest.Item]] = defaultdict(list)
    for item in items:
        core = item.get_closest_marker("core") is not None and item.get_closest_marker("extension") is None
        if core and item.get_closest_marker("points") is None:
            raise pytest.UsageError(
                f"{item.nodeid}: a core grader needs @pytest.mark.points(n, problem='...')"
            )
        if item.get_closest_marker("points") is not None:
            cases[(item.path, getattr(item, "originalname", item.name))].append(item)
    for group in cases.values():
        for item in group:
            marker = item.get_closest_marker("points")
            if not marker.args or "problem" not in marker.kwargs:
                raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.points(n, problem='...')")
            item.user_properties.append(("points", float(marker.args[0]) / len(group)))
            item.user_properties.append(("problem", marker.kwargs["problem"]))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    try:
        return (yield)
    except NotImplementedError as error:
        raise pytest.skip.Exception(f"not implemented: {_where(error)}", _use_item_location=True) from None
    except Exception as error:
        if _stub_in_worker(error):
            raise pytest.skip.Exception(
                "not implemented (in a worker process)", _use_item_location=True
            ) from None
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    # Fixtures are filled here: a module-scoped fixture that hit a stub skips every grader using it.
    _paths_first()
    try:
        return (yield)
    except NotImplementedError as error:
        raise pytest.skip.Exception(f"not implemented: {_where(error)}", _use_item_location=True) from None
    except Exception as error:
        if _stub_in_worker(error):
            raise pytest.skip.Exception(
                "not implemented (in a worker process)", _use_item_location=True
            ) from None
        raise


def _stub_in_worker(error: Exception) -> bool:
    """A spawned worker that hit a stub: torch reports it as the worker's traceback text."""
    return type(error).__name__ == "ProcessRaisedException" and "NotImplementedError" in str(error)


def _where(error: BaseException) -> str:
    """The innermost function a NotImplementedError came from (e.g. ``encode``)."""
    traceback = error.__traceback__
    name = "?"
    while traceback is not None:
        name = traceback.tb_frame.f_code.co_name
        traceback = traceback.tb_next
    return name


# ---------------------------------------------------------------------------------------- results


class Gradebook:
    """Collects each graded test's outcome (also from xdist workers) and writes the results."""

    def __init__(self, config: pytest.Config):
        self.path = Path(config.getoption("--grade"))
        self.tests: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        if "points" not in properties:
            return
        entry = self.tests.setdefault(
            report.nodeid,
            {
                "points": properties["points"],
                "problem": properties["problem"],
                "status": "passed",
                "output": "",
            },
        )
        if report.failed:
            entry["status"] = "failed"
            entry["output"] = report.longreprtext[-4000:]
        elif report.skipped and entry["status"] == "passed":
            entry["status"] = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            entry["output"] = reason.removeprefix("Skipped: ")

    def results(self) -> dict:
        tests = []
        for nodeid, entry in self.tests.items():
            earned = entry["points"] if entry["status"] == "passed" else 0.0
            tests.append(
                {
                    "name": nodeid,
                    "score": round(earned, 4),
                    "max_score": round(entry["points"], 4),
                    "status": "passed" if entry["status"] == "passed" else "failed",
                    "output": entry["output"] or entry["status"],
                    "visibility": "visible",
                    "tags": [entry["problem"]],
                }
            )
        score = sum(t["score"] for t in tests)
        max_score = sum(t["max_score"] for t in tests)
        return {
            "score": round(score, 2),
            "max_score": round(max_score, 2),
            "output": self.table(),
            "visibility": "visible",
            "stdout_visibility": "visible",
            "tests": tests,
        }

    def table(self) -> str:
        rows: dict[str, list[float]] = {}
        for entry in self.tests.values():
            row = rows.setdefault(entry["problem"], [0, 0, 0.0, 0.0])
            row[1] += 1
            row[3] += entry["points"]
            if entry["status"] == "passed":
                row[0] += 1
                row[2] += entry["points"]
        width = max([len("problem"), *map(len, rows)])
        lines = [f"{'problem':<{width}}  passed  points"]
        for problem, (passed, total, earned, points) in rows.items():
            lines.append(f"{problem:<{width}}  {passed:>3}/{total:<3} {earned:6.2f}/{points:g}")
        total = [sum(r[i] for r in rows.values()) for i in range(4)]
        lines.append(f"{'total':<{width}}  {total[0]:>3}/{total[1]:<3} {total[2]:6.2f}/{total[3]:g}")
        return "\n".join(lines)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        terminalreporter.section("grade")
        terminalreporter.write_line(self.table())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.results(), indent=2) + "\n", encoding="utf-8")
        terminalreporter.write_line(f"wrote {self.path}")
