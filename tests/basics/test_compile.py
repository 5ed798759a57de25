"""Graders for the model and training pieces under ``torch.compile`` (on the CPU).

- RoPE with ``rope_impl="reference"`` puts no complex-valued tensor into the captured graph (Inductor
  cannot generate code for complex numbers, so ``"complex"`` would leave eager kernels between the
  fused ones), and the model compiles without graph breaks.
- Gradient clipping has no data-dependent Python branch: it compiles with ``fullgraph=True``.
- The compiled model (Inductor) gives the eager model's logits and gradients.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.extension, pytest.mark.slow]  # compiling takes tens of seconds on a CPU

TINY = dict(
    vocab_size=61, context_length=16, d_model=32, num_layers=1, num_heads=2, d_ff=64, rope_theta=10_000.0
)
COMPILED = dict(norm_impl="torch", attention_impl="sdpa")  # the switches of the compiled presets


def _complex_nodes(model, ids) -> tuple[int, list[str]]:
    """(graph breaks, names of graph nodes whose value is a complex tensor) when dynamo captures ``model``."""
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(ids)
    names = [
        node.name
        for graph in explained.graphs
        for node in graph.graph.nodes
        if isinstance(node.meta.get("example_value"), torch.Tensor)
        and node.meta["example_value"].is_complex()
    ]
    return explained.graph_break_count, names


def test_real_rope_puts_no_complex_op_in_the_compiled_graph(adapters):
    ids = torch.randint(0, TINY["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(0))
    real = adapters.get_transformer_lm(adapters.get_model_config(**TINY, **COMPILED, rope_impl="reference"))
    breaks, complex_nodes = _complex_nodes(real, ids)
    assert breaks == 0 and complex_nodes == []
    # The check sees complex ops where they are: the complex-multiply RoPE has them.
    other = adapters.get_transformer_lm(adapters.get_model_config(**TINY, **COMPILED, rope_impl="complex"))
    assert _complex_nodes(other, ids)[1]


def test_gradient_clipping_compiles_without_a_graph_break(adapters):
    def params(scale):
        g = torch.Generator().manual_seed(1)
        ps = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(5, 3), (7,), (2, 2, 2)]]
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g) * scale
        return ps

    torch._dynamo.reset()
    # fullgraph=True raises on a graph break, e.g. `if norm > max_norm:` on a tensor (a host sync on a GPU).
    clip = torch.compile(adapters.run_gradient_clipping, fullgraph=True, backend="eager")
    for scale in (10.0, 0.01):  # one call above the limit, one below
        compiled, eager = params(scale), params(scale)
        clip(compiled, 1.0)
        adapters.run_gradient_clipping(eager, 1.0)
        for a, b in zip(compiled, eager):
            torch.testing.assert_close(a.grad, b.grad)


def test_compiled_model_equals_eager(adapters):
    torch.manual_seed(0)
    model = adapters.get_transformer_lm(adapters.get_model_config(**TINY, **COMPILED, rope_impl="reference"))
    ids = torch.randint(0, TINY["vocab_size"], (2, 12), generator=torch.Generator().manual_seed(0))
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)  # Inductor
    compiled(ids).sum().backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    compiled_logits = compiled(ids).detach()
    model.zero_grad()
    logits = model(ids)
    logits.sum().backward()
    torch.testing.assert_close(compiled_logits, logits.detach(), atol=1e-5, rtol=1e-5)
    for p, g in zip(model.parameters(), compiled_grads):
        torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)
