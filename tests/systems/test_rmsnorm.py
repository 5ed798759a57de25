"""Graders for RMSNorm: hand-written PyTorch backward and the Triton kernels.

Every implementation is compared with a plain fp64 RMSNorm differentiated by autograd (written here,
independent of the code under test) and with torch's own ``F.rms_norm``. The autograd Functions run on
``kernel_device`` (tests/systems/conftest.py): natively on a CUDA GPU when there is one, otherwise on
the CPU, where the Triton kernels go through the Triton interpreter (the root conftest sets
TRITON_INTERPRET=1). Inputs are made on the CPU and moved; results are compared on the CPU.

Tolerances: fp32 inputs must match the fp64 reference to 1e-5 (a few fp32 ulps of values of size ~1);
bf16 inputs are compared with the fp64 reference *on the same bf16 values*, and may differ by
rtol = atol = 2e-2 (the output is rounded to bf16, whose spacing is 2**-8 relative, ~4e-3).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

EPS = 1e-5
SHAPES = [(10, 20, 50), (3, 7), (2, 5, 1000), (1, 1)]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def reference_rmsnorm(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """y = x / sqrt(mean(x^2) + eps) * g, in fp64 (the oracle)."""
    x64, g64 = x.double(), g.double()
    return x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + EPS) * g64


def reference_grads(x, g, dy):
    """(y, dL/dx, dL/dg) of the reference, by autograd in fp64, for loss = sum(y * dy)."""
    x64 = x.detach().double().requires_grad_()
    g64 = g.detach().double().requires_grad_()
    y = reference_rmsnorm(x64, g64)
    y.backward(dy.double())
    return y.detach(), x64.grad, g64.grad


def make_inputs(shape, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(dtype)
    g = (1 + 0.5 * torch.randn(shape[-1], generator=gen)).to(dtype)
    dy = torch.randn(shape, generator=gen).to(dtype)
    return x, g, dy


def assert_close(actual, expected, dtype):
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual.double(), expected.double(), **TOL[dtype])


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_matches_torch_rms_norm(shape):
    # Sanity check of the oracle itself against torch's built-in.
    x, g, _ = make_inputs(shape, torch.float32)
    expected = F.rms_norm(x.double(), (shape[-1],), g.double(), eps=EPS)
    torch.testing.assert_close(reference_rmsnorm(x, g), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_g_pytorch(adapters, shape, dtype):
    x, g, dy = make_inputs(shape, dtype)
    _, _, grad_g = reference_grads(x, g, dy)
    actual = adapters.rmsnorm_backward_g_pytorch(dy, x, g)
    assert actual.shape == (shape[-1],)
    # grad_g sums over all rows, so its size grows like sqrt(rows): scale the absolute tolerance.
    scale = max(1.0, grad_g.abs().max().item())
    torch.testing.assert_close(
        actual.double(), grad_g, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_x_pytorch(adapters, shape, dtype):
    x, g, dy = make_inputs(shape, dtype)
    _, grad_x, _ = reference_grads(x, g, dy)
    assert_close(adapters.rmsnorm_backward_x_pytorch(dy, x, g), grad_x, dtype)


def run_function(function, x, g, dy, device="cpu"):
    """y, dL/dx, dL/dg of ``function.apply`` run on ``device``, returned on the CPU."""
    x = x.to(device, copy=True).requires_grad_()
    g = g.to(device, copy=True).requires_grad_()
    y = function.apply(x, g)
    y.backward(dy.to(device))
    return y.detach().cpu(), x.grad.cpu(), g.grad.cpu()


def check_function(function, shape, dtype, device):
    x, g, dy = make_inputs(shape, dtype)
    y_ref, grad_x_ref, grad_g_ref = reference_grads(x, g, dy)
    y, grad_x, grad_g = run_function(function, x, g, dy, device)
    assert y.dtype == dtype and grad_x.dtype == dtype and grad_g.dtype == dtype
    assert_close(y, y_ref, dtype)
    assert_close(grad_x, grad_x_ref, dtype)
    scale = max(1.0, grad_g_ref.abs().max().item())
    torch.testing.assert_close(
        grad_g.double(), grad_g_ref, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale
    )
    # The peer: torch's own RMSNorm on the same inputs.
    peer = F.rms_norm(x.float(), (shape[-1],), g.float(), eps=EPS)
    assert_close(y, peer, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_autograd_function_pytorch(adapters, kernel_device, shape, dtype):
    check_function(adapters.get_rmsnorm_autograd_function_pytorch(), shape, dtype, kernel_device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_autograd_function_triton(adapters, kernel_device, shape, dtype):
    check_function(adapters.get_rmsnorm_autograd_function_triton(), shape, dtype, kernel_device)


@pytest.mark.parametrize("get_function", ["pytorch", "triton"])
def test_non_contiguous_input_and_many_rows(adapters, kernel_device, get_function):
    # A transposed (non-contiguous) input, hidden size not a power of two, many rows.
    function = getattr(adapters, f"get_rmsnorm_autograd_function_{get_function}")()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(33, 4, 9, generator=gen)
    g = torch.randn(33, generator=gen)
    dy = torch.randn(9, 4, 33, generator=gen)
    y_ref, grad_x_ref, grad_g_ref = reference_grads(x.transpose(0, 2), g, dy)
    x_dev = x.to(kernel_device).transpose(0, 2)  # (9, 4, 33), transposed on the device: non-contiguous
    y, grad_x, grad_g = run_function(function, x_dev, g, dy, kernel_device)
    assert_close(y, y_ref, torch.float32)
    assert_close(grad_x, grad_x_ref, torch.float32)
    torch.testing.assert_close(grad_g.double(), grad_g_ref, rtol=1e-5, atol=1e-4)


def test_gradcheck_fp64_pytorch(adapters):
    # Finite differences agree with the hand-written backward (fp64 throughout, tiny shape).
    function = adapters.get_rmsnorm_autograd_function_pytorch()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(function.apply, (x, g), eps=1e-6, atol=1e-5)


def test_mismatched_gain_raises():
    from systems.rmsnorm import RMSNormAutogradPyTorch

    with pytest.raises(ValueError, match="gain"):
        RMSNormAutogradPyTorch.apply(torch.randn(2, 4), torch.randn(5))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_on_cuda_large(adapters, dtype):
    # Native (compiled) kernels at a course-sized hidden dimension.
    x, g, dy = make_inputs((4096, 4096), dtype)
    y_ref, grad_x_ref, grad_g_ref = reference_grads(x, g, dy)
    function = adapters.get_rmsnorm_autograd_function_triton()
    y, grad_x, grad_g = run_function(function, x, g, dy, torch.device("cuda"))
    assert_close(y, y_ref, dtype)
    assert_close(grad_x, grad_x_ref, dtype)
    scale = max(1.0, grad_g_ref.abs().max().item())
    torch.testing.assert_close(
        grad_g.double(), grad_g_ref, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale
    )
