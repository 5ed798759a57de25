"""The Triton kernels under ``torch.compile``, and without host syncs.

- No graph breaks: ``torch._dynamo.explain`` of a call of each Triton autograd Function (and of the
  unit-1 model with both kernels selected) reports zero breaks, and ``torch.compile(fullgraph=True)``
  -- which raises at the first break -- gives the same outputs and gradients as eager. The
  ``aot_eager`` backend traces forward and backward like Inductor does but runs the traced graph with
  eager kernels, so the check also runs on the CPU, where the kernels go through the Triton interpreter.
- No host syncs: a forward and backward of each kernel never reads a tensor's value on the host
  (``aten::_local_scalar_dense``, what ``.item()``, ``if tensor:`` and ``int(tensor)`` dispatch to,
  or ``aten::nonzero``, whose output size depends on values). On a GPU each such read waits for every
  queued kernel; on the CPU the same ops show up in the torch profiler's list of dispatched ops
  (nested ones included, e.g. inside our custom ops), so this is checked here without a GPU.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.extension

HOST_READS = ("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::nonzero")


def host_reads(fn) -> list[str]:
    """Names of the ops run by ``fn()`` that copy tensor values to the host (syncs on a GPU)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        fn()
    return [event.name for event in profiler.events() if event.name in HOST_READS]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def rmsnorm_inputs(device):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 40, generator=gen).to(device).requires_grad_()
    g = (1 + 0.1 * torch.randn(40, generator=gen)).to(device).requires_grad_()
    return x, g


def attention_inputs(device):
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(1, 2, 20, 16, generator=gen).to(device).requires_grad_() for _ in range(3))


def run_and_grads(fn, inputs):
    """(output, gradients of sum(output * weights)) of fn(*inputs), with fixed random weights."""
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device)
    (out * weights).sum().backward()
    return out.detach(), [t.grad.clone() for t in inputs]


def assert_compiles_like_eager(fn, inputs):
    explanation = torch._dynamo.explain(fn)(*inputs)
    reasons = [str(b.reason) for b in explanation.break_reasons]
    assert explanation.graph_break_count == 0, f"graph breaks: {reasons}"
    eager_out, eager_grads = run_and_grads(fn, inputs)
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)  # raises on any graph break
    out, grads = run_and_grads(compiled, inputs)
    torch.testing.assert_close(out, eager_out)
    for ours, theirs in zip(grads, eager_grads):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.slow
def test_rmsnorm_triton_compiles_without_graph_breaks(adapters, kernel_device):
    function = adapters.get_rmsnorm_autograd_function_triton()
    assert_compiles_like_eager(lambda x, g: function.apply(x, g), rmsnorm_inputs(kernel_device))


@pytest.mark.slow
def test_flash_triton_compiles_without_graph_breaks(adapters, kernel_device):
    function = adapters.get_flashattention_autograd_function_triton()
    assert_compiles_like_eager(lambda q, k, v: function.apply(q, k, v, True), attention_inputs(kernel_device))


@pytest.mark.slow
def test_model_with_kernels_compiles_without_graph_breaks(adapters, kernel_device):
    config = dict(vocab_size=64, context_length=16, d_model=32, num_layers=1, num_heads=2, d_ff=64)
    torch.manual_seed(0)
    model = adapters.make_transformer_lm("triton", "flash_triton", **config).to(kernel_device)
    tokens = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0)).to(kernel_device)
    explanation = torch._dynamo.explain(model)(tokens)
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(tokens), model(tokens), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", ["rmsnorm", "flash"])
def test_kernels_do_not_read_values_on_the_host(adapters, kernel_device, kernel):
    if kernel == "rmsnorm":
        function = adapters.get_rmsnorm_autograd_function_triton()
        inputs, call = rmsnorm_inputs(kernel_device), function.apply
    else:
        function = adapters.get_flashattention_autograd_function_triton()
        inputs, call = attention_inputs(kernel_device), lambda q, k, v: function.apply(q, k, v, True)
    reads = host_reads(lambda: call(*inputs).sum().backward())
    assert reads == [], f"host reads (syncs on a GPU) in forward/backward: {reads}"


@torch.library.custom_op("test_kernels_compile::reads_on_host", mutates_args=())
def _reads_on_host(x: torch.Tensor) -> torch.Tensor:
    return x * 2 if x.sum() > 100 else x.clone()  # a data-dependent branch: one host read


def test_host_read_detector_bites(kernel_device):
    # The detector itself: a host read hidden inside a custom op, as ours are, is caught.
    x = torch.randn(4, device=kernel_device)
    assert "aten::_local_scalar_dense" in host_reads(lambda: _reads_on_host(x))
    assert host_reads(lambda: x * 2) == []
