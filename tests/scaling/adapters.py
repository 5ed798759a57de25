"""Adapters for the scaling graders: the only door from tests/scaling to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/scaling --adapters scaling=student_pkg.adapters`.
"""

from __future__ import annotations


# ---- accounting (scaling/flops.py) ----
def make_model_config(**fields):
    """Unit 1's model config with the given fields (the accounting tests build models from it)."""
    from basics.model import ModelConfig

    return ModelConfig(**fields)


def build_transformer(config):
    """Unit 1's TransformerLM for ``config`` (its matmuls are counted with FlopCounterMode)."""
    from basics.model import TransformerLM

    return TransformerLM.from_config(config)


# ---- the core contract of the scaling unit (the course's scaling assignment has no adapters file:
# these are the questions its handout asks, with the course's words as parameters) ----
def run_transformer_parameter_count(vocab_size, context_length, d_model, num_layers, num_heads, d_ff) -> int:
    """Trainable parameters of the course's Transformer LM (RoPE, SwiGLU, RMSNorm, untied head)."""
    return run_count_parameters(
        make_model_config(
            vocab_size=vocab_size, context_length=context_length, d_model=d_model,
            num_layers=num_layers, num_heads=num_heads, d_ff=d_ff,
        )
    )["total"]  # fmt: skip


def run_transformer_forward_flops(vocab_size, context_length, d_model, num_layers, num_heads, d_ff) -> int:
    """Matmul FLOPs of one forward pass over a full sequence of ``context_length`` tokens (2 m n p per
    (m x n) @ (n x p); attention scores over the whole square, as executed)."""
    config = make_model_config(
        vocab_size=vocab_size, context_length=context_length, d_model=d_model,
        num_layers=num_layers, num_heads=num_heads, d_ff=d_ff,
    )  # fmt: skip
    return run_forward_flops_per_token(config) * context_length


def run_count_parameters(config) -> dict:
    """``{"total": int, "non_embedding": int}``; non-embedding leaves out token and position
    embeddings and the output head."""
    from scaling.flops import count_parameters

    counts = count_parameters(config)
    return {"total": counts.total, "non_embedding": counts.non_embedding}


def run_forward_flops_per_token(config, context_length=None, causal=False) -> int:
    """Forward matmul FLOPs per token (attention counted as executed unless ``causal``)."""
    from scaling.flops import forward_flops_per_token

    return forward_flops_per_token(config, context_length, causal)


def run_flops_breakdown(config, context_length=None) -> dict:
    """Forward FLOPs per token grouped as ``attention_projections`` (q, k, v, o),
    ``attention_scores`` (QK^T and AV), ``feed_forward`` and ``output_head``, all layers summed."""
    from scaling.flops import flops_breakdown

    groups = {"attention_projections": 0, "attention_scores": 0, "feed_forward": 0, "output_head": 0}
    for term in flops_breakdown(config, context_length):
        if term.depends_on_context:
            groups["attention_scores"] += term.flops
        elif term.name.endswith("projection"):
            groups["attention_projections"] += term.flops
        elif term.name.startswith("ffn"):
            groups["feed_forward"] += term.flops
        elif term.name == "output head":
            groups["output_head"] += term.flops
        else:
            raise ValueError(f"unexpected term {term.name!r}")
    return groups


def run_training_flops(config, tokens) -> float:
    """Exact-count training FLOPs (forward + backward) for ``tokens`` tokens at full context."""
    from scaling.flops import training_flops

    return training_flops(config, tokens)


def run_six_nd(config, tokens, non_embedding=True) -> float:
    from scaling.flops import six_nd

    return six_nd(config, tokens, non_embedding)


def run_measured_training_flops(model, token_ids) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs PyTorch executes for ``model(token_ids)`` (FlopCounterMode)."""
    from scaling.flops import measured_training_flops

    return measured_training_flops(model, token_ids)


def run_flops_table(config, tokens) -> str:
    from scaling.flops import format_flops_table

    return format_flops_table(config, tokens)


# (end of section: accounting)


# ---- IsoFLOPs fit (scaling/isoflops.py) ----
def run_load_runs(path) -> list[dict]:
    """Read the course's JSON interchange file into ``[{"parameters", "compute_budget", "final_loss"}]``."""
    from scaling.isoflops import load_runs

    return [
        {"parameters": r.parameters, "compute_budget": r.compute_budget, "final_loss": r.final_loss}
        for r in load_runs(path)
    ]


def _runs(records):
    from scaling.isoflops import runs_from_records

    return runs_from_records(list(records))


def run_fit_isoflops(records, method="minimum") -> dict:
    """Fit N_opt = k_N C^a and D_opt = k_D C^b. ``method``: "minimum" or "parabola".

    Returns ``parameters_coefficient, parameters_exponent, tokens_coefficient, tokens_exponent`` and
    ``optimal`` = [(C, N_opt, D_opt)] per budget, ascending C."""
    from scaling.isoflops import fit_isoflops

    fit = fit_isoflops(_runs(records), method)
    return {
        "parameters_coefficient": fit.parameters_law.coefficient,
        "parameters_exponent": fit.parameters_law.exponent,
        "tokens_coefficient": fit.tokens_law.coefficient,
        "tokens_exponent": fit.tokens_law.exponent,
        "optimal": [(p.compute_budget, p.parameters, p.tokens) for p in fit.points],
    }


def run_isoflops_predict(records, compute_budget, method="minimum") -> tuple[float, float]:
    """(N_opt, D_opt) predicted at ``compute_budget`` by the IsoFLOPs fit."""
    from scaling.isoflops import fit_isoflops

    return fit_isoflops(_runs(records), method).predict(compute_budget)


def run_bootstrap_isoflops(records, compute_budgets, num_samples=200, level=0.9, seed=0) -> dict:
    """``{"parameters_exponent": (estimate, low, high), "predictions": {C: ((N, lo, hi), (D, lo, hi))}}``."""
    from scaling.isoflops import bootstrap_isoflops

    boot = bootstrap_isoflops(_runs(records), compute_budgets, num_samples, level, seed=seed)

    def triple(interval):
        return (interval.estimate, interval.low, interval.high)

    return {
        "parameters_exponent": triple(boot.parameters_exponent),
        "predictions": {c: (triple(n), triple(d)) for c, (n, d) in boot.predictions.items()},
    }


def run_plot_isoflops(records, out_dir, method="minimum") -> list:
    """Save the IsoFLOP curves and the N_opt / D_opt vs C plots (fit extrapolated to 1e24); return paths."""
    from scaling.isoflops import fit_isoflops, plot_isoflops

    runs = _runs(records)
    return plot_isoflops(runs, fit_isoflops(runs, method), out_dir, extrapolate_to=1e24)


# (end of section: IsoFLOPs fit)


# ---- parametric fit (scaling/chinchilla.py) ----
def run_fit_chinchilla(parameters, tokens, losses) -> dict:
    """Huber (delta 1e-3) fit of L = E + A/N^alpha + B/D^beta on log L with L-BFGS from a grid.

    Returns ``E, A, B, alpha, beta`` and ``parameters_exponent`` (beta/(alpha+beta))."""
    from scaling.chinchilla import fit_chinchilla

    fit = fit_chinchilla(parameters, tokens, losses)
    return {
        "E": fit.E,
        "A": fit.A,
        "B": fit.B,
        "alpha": fit.alpha,
        "beta": fit.beta,
        "parameters_exponent": fit.parameters_exponent,
    }


def run_chinchilla_compute_optimal(law: dict, compute_budget) -> tuple[float, float]:
    """(N_opt, D_opt) minimising ``law`` (a dict of E, A, B, alpha, beta) subject to 6ND = C."""
    from scaling.chinchilla import ChinchillaLaw

    n, d = ChinchillaLaw(**{k: law[k] for k in ("E", "A", "B", "alpha", "beta")}).compute_optimal(
        compute_budget
    )
    return float(n), float(d)


def run_bootstrap_chinchilla(parameters, tokens, losses, num_samples=30, level=0.9, seed=0) -> dict:
    """Percentile intervals: ``{name: (low, high)}`` for E, A, B, alpha, beta, parameters_exponent."""
    from scaling.chinchilla import bootstrap_chinchilla

    return bootstrap_chinchilla(parameters, tokens, losses, num_samples, level, seed).intervals


# (end of section: parametric fit)


# ---- budgeted lab (scaling/ledger.py, scaling/lab.py, scaling/sweep.py) ----
def _lab_config(db_path, total_budget, fields):
    from scaling.lab import LabConfig

    return LabConfig(db_path=str(db_path), total_budget=total_budget, **fields)


def _lab_runner(runner):
    """Our runners take (request, plan); the graders' fakes take the request as a dict."""
    if runner is None:
        return None
    from dataclasses import asdict

    return lambda request, plan: runner(asdict(request))


def run_lab_query(db_path, total_budget, request: dict, runner=None, **lab_fields) -> dict:
    """Submit one request to the ledger at ``db_path`` (created with ``total_budget``).

    ``request``: d_model, num_layers, num_heads, batch_size, learning_rate, train_flops.
    ``runner(request_dict) -> (train_loss, val_loss)`` replaces real training (None: real training on
    ``lab_fields``' data). Raises ValueError for an invalid request or when the budget does not fit
    (the message names the remaining budget). Returns train_loss, val_loss, cached, charged."""
    from scaling.lab import query
    from scaling.ledger import LabRequest, Ledger

    config = _lab_config(db_path, total_budget, lab_fields)
    result = query(LabRequest.from_dict(request), Ledger(db_path, total_budget), config, _lab_runner(runner))
    return {
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "cached": result.cached,
        "charged": result.charged,
        "parameters": result.parameters,
        "tokens": result.tokens,
    }


def run_lab_spent(db_path) -> float:
    """FLOPs charged so far in the ledger at ``db_path``."""
    from scaling.ledger import Ledger

    return Ledger(db_path).spent()


def run_lab_remaining(db_path) -> float:
    from scaling.ledger import Ledger

    return Ledger(db_path).remaining()


def run_lab_sweep(
    db_path, total_budget, budgets, runner=None, sizes_per_budget=3, seeds=1, max_extra_sizes=0, **lab_fields
) -> list[dict]:
    """An IsoFLOPs sweep through the lab, sizes placed by the sweep's own rules; one record per run:
    ``{"parameters", "compute_budget", "final_loss", "train_loss", "cached", "charged", "seed",
    "learning_rate", "batch_size", "d_model"}``. ``runner`` (a fake taking the request as a dict)
    runs in this process; None trains for real (in this process too: one worker)."""
    from scaling.ledger import Ledger
    from scaling.sweep import SweepConfig, run_sweep

    config = _lab_config(db_path, total_budget, lab_fields)
    sweep = SweepConfig(
        tuple(budgets), sizes_per_budget, seeds=seeds, max_extra_sizes=max_extra_sizes, workers=1
    )
    ledger = Ledger(db_path, total_budget)
    return [
        {
            "parameters": r.parameters,
            "compute_budget": r.request.train_flops,
            "final_loss": r.val_loss,
            "train_loss": r.train_loss,
            "tokens": r.tokens,
            "cached": r.cached,
            "charged": r.charged,
            "seed": r.request.seed,
            "learning_rate": r.request.learning_rate,
            "batch_size": r.request.batch_size,
            "d_model": r.request.d_model,
        }
        for r in run_sweep(sweep, ledger, config, _lab_runner(runner))
    ]


# (end of section: budgeted lab)


# ---- the sweep's rules and its prediction (scaling/sweep.py, scaling/prediction.py) ----
def run_sweep_learning_rate(d_model, **sweep_fields) -> float:
    """Peak learning rate the sweep gives a model of width ``d_model``."""
    from scaling.sweep import SweepConfig, learning_rate_for

    return learning_rate_for(d_model, SweepConfig(**sweep_fields))


def run_sweep_batch_size(tokens, context_length, **sweep_fields) -> int:
    """Sequences per step the sweep gives a run of ``tokens`` tokens."""
    from scaling.sweep import SweepConfig, batch_size_for

    return batch_size_for(tokens, context_length, SweepConfig(**sweep_fields))


def run_place_sizes(centre, sizes_per_budget=5, size_spacing=2.0, **lab_fields) -> list[int]:
    """Non-embedding N of the shapes the sweep places around ``centre``, ascending."""
    from scaling.lab import LabConfig
    from scaling.sweep import SweepConfig, place_sizes, shape_parameters

    lab = LabConfig(**lab_fields)
    sweep = SweepConfig(sizes_per_budget=sizes_per_budget, size_spacing=size_spacing)
    return [shape_parameters(s, lab) for s in place_sizes(centre, sweep, lab)]


def run_aggregate_seeds(records) -> list[dict]:
    """``[(compute_budget, parameters, tokens, loss)]`` -> one ``{"compute_budget", "parameters",
    "mean", "spread", "seeds"}`` per point (spread: sample standard deviation)."""
    from scaling.prediction import aggregate_seeds

    return [
        {"compute_budget": p.compute_budget, "parameters": p.parameters, "mean": p.mean, "spread": p.spread,
         "seeds": len(p.losses)}
        for p in aggregate_seeds(records)
    ]  # fmt: skip


def run_bootstrap_sweep(records, target_budget, num_samples=100, level=0.9, seed=0, sizes=True) -> dict:
    """Two-level bootstrap of the sweep's fits; ``{name: (estimate, low, high)}`` for
    ``parameters_exponent``, ``parameters``, ``tokens``, ``loss`` (the last three at ``target_budget``)."""
    from scaling.prediction import aggregate_seeds, bootstrap_sweep

    boot = bootstrap_sweep(aggregate_seeds(records), target_budget, num_samples, level, seed, sizes)
    return {
        name: (i.estimate, i.low, i.high)
        for name, i in (("parameters_exponent", boot.parameters_exponent), ("parameters", boot.parameters),
                        ("tokens", boot.tokens), ("loss", boot.loss))
    }  # fmt: skip


def run_predict(records, target_budget, num_samples=100, level=0.9, holdout=False, sizes=True) -> dict:
    """The submission (JSON-ready dict) for sweep ``records`` at ``target_budget``, with
    ``frontier_loss`` and ``law_loss`` beside the submitted ``loss``; with ``holdout``, the held-out
    check as well (as ``predict`` writes it). ``sizes``: as ``run_bootstrap_sweep``."""
    from scaling.prediction import aggregate_seeds, bootstrap_sweep, holdout_check, make_submission

    points = aggregate_seeds(records)
    check = holdout_check(points, target_budget, num_samples, level) if holdout else None
    return make_submission(bootstrap_sweep(points, target_budget, num_samples, level, sizes=sizes), check)


def run_holdout_check(records, num_samples=60, level=0.9, target_budget=None) -> dict | None:
    """The loss law's test on the sweep's own top budget: fitted on the budgets below it,
    ``{"budget", "predicted": (estimate, low, high), "measured", "inside": bool}``; ``None`` with fewer
    than three budgets. ``measured`` is the top budget's IsoFLOP parabola vertex loss."""
    from scaling.prediction import aggregate_seeds, holdout_check

    holdout = holdout_check(aggregate_seeds(records), target_budget, num_samples, level)
    if holdout is None:
        return None
    p = holdout.predicted
    return {
        "budget": holdout.budget,
        "predicted": (p.estimate, p.low, p.high),
        "measured": holdout.measured,
        "inside": p.low <= holdout.measured <= p.high,
        "corrected": None if holdout.corrected is None else holdout.corrected.estimate,
    }


def run_check(submission, db_path, total_budget, runner, **lab_fields) -> dict:
    """Train (``runner``: a fake taking the request as a dict) the run that checks ``submission``
    and grade it: ``{"inside": bool, "loss": str, "parameters": str, "request": dict}``."""
    from dataclasses import asdict

    from scaling.lab import query
    from scaling.ledger import Ledger
    from scaling.prediction import grade_submission
    from scaling.sweep import SweepConfig, check_request

    config = _lab_config(db_path, total_budget, lab_fields)
    request = check_request(
        submission["parameters"]["estimate"], submission["target_budget"], SweepConfig(), config
    )
    result = query(request, Ledger(db_path, total_budget), config, _lab_runner(runner))
    return {**grade_submission(submission, result.val_loss, result.parameters), "request": asdict(request)}


def run_lab_train(
    lab_fields: dict,
    request: dict,
    steps: int,
    train_tokens,
    val_tokens,
    checkpoint=None,
    checkpoint_seconds=0.0,
    stop_after=None,
) -> tuple[float, float]:
    """Train ``request`` for ``steps`` steps on the token arrays with the lab's schedule and return
    (train loss, validation loss). ``checkpoint``: the run saves its state there every
    ``checkpoint_seconds`` and resumes from it; ``stop_after``: raise KeyboardInterrupt after that
    many steps (an interrupted run)."""
    from scaling.lab import LabConfig, model_config_for, train_model, validation_windows
    from scaling.ledger import LabRequest

    lab = LabConfig(**lab_fields)
    req = LabRequest.from_dict(request)

    def on_step(step, loss):
        if stop_after is not None and step + 1 >= stop_after:
            raise KeyboardInterrupt

    val = validation_windows(val_tokens, lab.val_windows, lab.context_length)
    return train_model(
        model_config_for(req, lab), req, steps, train_tokens, val, lab.device,
        checkpoint=checkpoint, checkpoint_seconds=checkpoint_seconds, on_step=on_step,
    )  # fmt: skip
