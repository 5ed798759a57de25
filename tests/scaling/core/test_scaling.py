"""Core graders for the scaling assignment. The course ships no adapters file for it, so its core
contract is ours, on the questions the handout asks, in the course's words
(``tests/grading.py: CONTRACT["scaling"]``): the parameter count and forward FLOPs of the course's
Transformer LM (also the accounting problem of assignment 1), and the IsoFLOPs fit of power laws
N_opt = k C^a and D_opt = k' C^b with D = C / (6 N), on runs generated here from a known law.
"""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.core


def course_parameters(vocab_size, context_length, d_model, num_layers, num_heads, d_ff) -> int:
    per_layer = 4 * d_model * d_model + 3 * d_model * d_ff + 2 * d_model  # q,k,v,o; w1,w2,w3; ln1,ln2
    return 2 * vocab_size * d_model + num_layers * per_layer + d_model  # embeddings, head, ln_final


def course_forward_flops(vocab_size, context_length, d_model, num_layers, num_heads, d_ff) -> int:
    t = context_length
    per_layer = 4 * 2 * t * d_model * d_model + 2 * 2 * t * t * d_model + 3 * 2 * t * d_model * d_ff
    return num_layers * per_layer + 2 * t * d_model * vocab_size


SIZES = [
    dict(vocab_size=1000, context_length=128, d_model=64, num_layers=2, num_heads=4, d_ff=192),
    dict(vocab_size=50257, context_length=1024, d_model=1600, num_layers=48, num_heads=25, d_ff=6400),  # GPT-2 XL
]


@pytest.mark.points(2, problem="transformer_accounting")
@pytest.mark.parametrize("sizes", SIZES, ids=["small", "gpt2-xl"])
def test_parameter_count(adapters, sizes):
    assert adapters.run_transformer_parameter_count(**sizes) == course_parameters(**sizes)


@pytest.mark.points(2, problem="transformer_accounting")
@pytest.mark.parametrize("sizes", SIZES, ids=["small", "gpt2-xl"])
def test_forward_flops(adapters, sizes):
    assert adapters.run_transformer_forward_flops(**sizes) == course_forward_flops(**sizes)


def synthetic_runs(exponent=0.5, coefficient=0.1):
    """Per budget C, models around N_opt = coefficient * C^exponent; the loss is lowest at N_opt."""
    runs = []
    for budget in (1e18, 3e18, 1e19, 3e19, 1e20):
        best = coefficient * budget**exponent
        for factor in (0.25, 0.5, 1.0, 2.0, 4.0):
            loss = 2.0 + 0.3 * math.log(factor) ** 2 + 1.0 / math.log10(budget)
            runs.append({"parameters": best * factor, "compute_budget": budget, "final_loss": loss})
    return runs


@pytest.mark.points(4, problem="isoflops")
def test_isoflops_fit_recovers_the_law(adapters):
    fit = adapters.run_fit_isoflops(synthetic_runs(exponent=0.5, coefficient=0.1))
    assert fit["parameters_exponent"] == pytest.approx(0.5, abs=1e-3)
    assert fit["tokens_exponent"] == pytest.approx(0.5, abs=1e-3)  # D = C / (6 N)
    assert fit["parameters_coefficient"] == pytest.approx(0.1, rel=1e-2)
    assert fit["tokens_coefficient"] == pytest.approx(1 / 0.6, rel=1e-2)


@pytest.mark.points(2, problem="isoflops")
def test_isoflops_fit_other_exponent(adapters):
    fit = adapters.run_fit_isoflops(synthetic_runs(exponent=0.6, coefficient=0.02))
    assert fit["parameters_exponent"] == pytest.approx(0.6, abs=1e-3)
    assert fit["tokens_exponent"] == pytest.approx(0.4, abs=1e-3)
