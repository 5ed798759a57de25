"""Core graders for assignment 2's kernels, through the course's adapters: FlashAttention-2 as an
autograd Function in PyTorch and in Triton (``.apply(Q, K, V, is_causal)``), and the 2024 release's
RMSNorm functions. Compared with attention / RMSNorm written here in fp64 and differentiated by
autograd. Lengths that straddle any tile size (1, 17, 33, 70) and query/key lengths that differ.

Tolerances: fp32 1e-5 against the fp64 reference (values O(1); 1e-4 on a GPU, whose fp32 matmuls and
exp may use tensor-core tf32x3 / approximate hardware functions); bf16 3e-2. The log-sum-exp L must be
among the tensors forward saves (shaped like Q without its last dimension), as the handout asks.
The Functions run on DEVICE: natively on CUDA when there is a GPU; otherwise on the CPU, where the
Triton kernels run in the Triton interpreter, so their cases are small. Inputs are made on the CPU
and moved; results are compared on the CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

pytestmark = pytest.mark.core
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=3e-2, atol=3e-2)}
if DEVICE.type == "cuda":
    TOL[torch.float32] = dict(rtol=1e-4, atol=1e-4)


def _attention64(q, k, v, is_causal):
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if is_causal:
        scores = scores.masked_fill(torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v, torch.logsumexp(scores, dim=-1)


def check_flash(function, lead, n_queries, n_keys, d, is_causal, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*lead, n, d, generator=g).to(dtype) for n in (n_queries, n_keys, n_keys))
    do = torch.randn(*lead, n_queries, d, generator=g).to(dtype)
    q, k, v = (t.to(DEVICE, copy=True).requires_grad_() for t in (q, k, v))
    out = function.apply(q, k, v, is_causal)
    saved = [t.cpu() for t in out.grad_fn.saved_tensors if t.shape == q.shape[:-1]]
    assert saved, "forward must save the log-sum-exp L (shaped like Q without its last dim)"
    out.backward(do.to(DEVICE))
    q64, k64, v64 = (t.detach().cpu().double().requires_grad_() for t in (q, k, v))
    out_ref, lse_ref = _attention64(q64, k64, v64, is_causal)
    out_ref.backward(do.double())
    torch.testing.assert_close(out.detach().cpu().double(), out_ref.detach(), **TOL[dtype])
    assert any(torch.allclose(t.double(), lse_ref.detach(), **TOL[dtype]) for t in saved), "L is wrong"
    for ours, ref in ((q.grad, q64.grad), (k.grad, k64.grad), (v.grad, v64.grad)):
        torch.testing.assert_close(ours.cpu().double(), ref, **TOL[dtype])


PYTORCH_CASES = [  # (leading dims, n_queries, n_keys, d, is_causal)
    ((2,), 17, 17, 16, False),
    ((2,), 17, 17, 16, True),
    ((2, 3), 70, 70, 32, False),
    ((2, 3), 70, 70, 32, True),
    ((2,), 20, 45, 16, False),  # more keys than queries (not causal: the handout leaves that open)
]


@pytest.mark.points(5, problem="flash_forward_backward_pytorch")
@pytest.mark.parametrize("case", PYTORCH_CASES, ids=str)
def test_flash_pytorch(adapters, case):
    check_flash(adapters.get_flashattention_autograd_function_pytorch(), *case)


@pytest.mark.points(10, problem="flash_forward_backward_triton")
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", [((1,), 17, 17, 16), ((2,), 33, 33, 16)], ids=str)
def test_flash_triton(adapters, case, is_causal):
    check_flash(adapters.get_flashattention_autograd_function_triton(), *case, is_causal)


# ------------------------------------------------------------------------ RMSNorm (2024 release)

EPS = 1e-5


def _rmsnorm_grads(x, g, dy):
    x64, g64 = x.detach().double().requires_grad_(), g.detach().double().requires_grad_()
    y = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + EPS) * g64
    y.backward(dy.double())
    return y.detach(), x64.grad, g64.grad


def _rmsnorm_inputs(shape=(3, 5, 33)):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    return x, 1 + 0.5 * torch.randn(shape[-1], generator=gen), torch.randn(shape, generator=gen)


@pytest.mark.points(2, problem="rmsnorm_backward")
def test_rmsnorm_backward_pytorch(adapters):
    x, g, dy = _rmsnorm_inputs()
    _, grad_x, grad_g = _rmsnorm_grads(x, g, dy)
    torch.testing.assert_close(adapters.rmsnorm_backward_x_pytorch(dy, x, g).double(), grad_x, **TOL[torch.float32])
    torch.testing.assert_close(adapters.rmsnorm_backward_g_pytorch(dy, x, g).double(), grad_g, rtol=1e-5, atol=1e-4)


@pytest.mark.points(3, problem="rmsnorm_autograd")
@pytest.mark.parametrize("impl", ["pytorch", "triton"])
def test_rmsnorm_autograd_function(adapters, impl):
    function = getattr(adapters, f"get_rmsnorm_autograd_function_{impl}")()
    x, g, dy = _rmsnorm_inputs()
    y_ref, grad_x_ref, grad_g_ref = _rmsnorm_grads(x, g, dy)
    x, g = x.to(DEVICE, copy=True).requires_grad_(), g.to(DEVICE, copy=True).requires_grad_()
    y = function.apply(x, g)
    y.backward(dy.to(DEVICE))
    torch.testing.assert_close(y.detach().cpu().double(), y_ref, **TOL[torch.float32])
    torch.testing.assert_close(x.grad.cpu().double(), grad_x_ref, **TOL[torch.float32])
    torch.testing.assert_close(g.grad.cpu().double(), grad_g_ref, rtol=1e-5, atol=1e-4)
