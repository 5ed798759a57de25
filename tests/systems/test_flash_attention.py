"""Graders for FlashAttention-2 in PyTorch and Triton.

Both autograd Functions are compared with plain attention written here in fp64 (the whole score matrix
at once, differentiated by autograd) and with torch's ``F.scaled_dot_product_attention``: the output
O, the log-sum-exp L that forward saves, and dQ, dK, dV; causal and not; sequence lengths that are not
multiples of any tile size (1, 17, 33, 70) and query/key lengths that differ; leading head dims. The
Functions run on ``kernel_device`` (tests/systems/conftest.py): natively on a CUDA GPU when there is one,
otherwise on the CPU, where the Triton kernels run in the Triton interpreter -- slow, so the Triton
cases use small batches. Inputs are made on the CPU and moved; results are compared on the CPU.

Tolerances: fp32 inputs must match the fp64 reference to rtol = atol = 1e-5 (values are O(1)) on the
CPU, 1e-4 on a GPU (fp32 tiles are multiplied as three tf32 products there, and exp is the hardware's
approximate exp2); bf16 inputs are compared with the fp64 reference on the same bf16 values with
rtol = atol = 3e-2 (outputs and gradients are rounded to bf16, spacing 2**-8 relative).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=3e-2, atol=3e-2)}
CUDA_FP32_TOL = dict(rtol=1e-4, atol=1e-4)


def tolerance(dtype: torch.dtype, device: torch.device) -> dict:
    return CUDA_FP32_TOL if (device.type == "cuda" and dtype == torch.float32) else TOL[dtype]


def reference_attention(q, k, v, is_causal):
    """(O, L) of plain attention in fp64: L = logsumexp of the scaled scores per query."""
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if is_causal:
        future = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return torch.softmax(scores, dim=-1) @ v, lse


def make_inputs(lead, n_queries, n_keys, d, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, n_queries, d, generator=gen).to(dtype)
    k = torch.randn(*lead, n_keys, d, generator=gen).to(dtype)
    v = torch.randn(*lead, n_keys, d, generator=gen).to(dtype)
    do = torch.randn(*lead, n_queries, d, generator=gen).to(dtype)
    return q, k, v, do


def saved_logsumexp(out, q):
    """Find L among the tensors forward saved: the one shaped like q without its last dim."""
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 5, f"forward should save exactly q, k, v, O and L; saved {len(saved)} tensors"
    candidates = [t for t in saved if t.shape == q.shape[:-1]]
    assert candidates, f"no saved tensor of shape {tuple(q.shape[:-1])} (the logsumexp L)"
    return candidates[0]


def check_flash(
    function, lead, n_queries, n_keys, d, is_causal, dtype=torch.float32, transpose=False, device=None
):
    """Run ``function`` on ``device`` (default: the CPU) and compare O, L, dQ, dK, dV on the CPU."""
    device = device or torch.device("cpu")
    q, k, v, do = make_inputs(lead, n_queries, n_keys, d, dtype)
    q_dev, k_dev, v_dev, do_dev = (t.to(device, copy=True) for t in (q, k, v, do))
    if transpose:  # non-contiguous inputs, as the model produces them: (b, seq, h, d) -> (b, h, seq, d)
        q_dev, k_dev, v_dev, do_dev = (
            t.transpose(-3, -2).contiguous().transpose(-3, -2) for t in (q_dev, k_dev, v_dev, do_dev)
        )
    q_dev, k_dev, v_dev = (t.requires_grad_() for t in (q_dev, k_dev, v_dev))
    out = function.apply(q_dev, k_dev, v_dev, is_causal)
    lse = saved_logsumexp(out, q_dev).cpu()
    out.backward(do_dev)
    out = out.detach().cpu()

    q64, k64, v64 = (t.double().requires_grad_() for t in (q, k, v))
    out_ref, lse_ref = reference_attention(q64, k64, v64, is_causal)
    out_ref.backward(do.double())

    tol = tolerance(dtype, device)
    assert out.shape == q.shape and out.dtype == dtype
    torch.testing.assert_close(out.double(), out_ref.detach(), **tol)
    torch.testing.assert_close(lse.double(), lse_ref.detach(), **tol)
    grads = (("dq", q_dev.grad, q64.grad), ("dk", k_dev.grad, k64.grad), ("dv", v_dev.grad, v64.grad))
    for name, ours, ref in grads:
        assert ours.shape == ref.shape and ours.dtype == dtype, name
        torch.testing.assert_close(ours.cpu().double(), ref, **tol, msg=lambda m, name=name: f"{name}: {m}")
    # The peer: torch's fused attention (its causal mask is also aligned at the top-left).
    peer = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=is_causal)
    torch.testing.assert_close(out.float(), peer, **tol)


# (leading dims, n_queries, n_keys, d): odd lengths straddle tile boundaries of 16, 32, 64 alike.
PYTORCH_CASES = [
    ((2,), 1, 1, 16),
    ((2,), 17, 17, 16),
    ((3,), 70, 70, 32),
    ((2, 3), 33, 33, 16),  # batch and head dims
    ((2,), 64, 64, 64),  # exact multiple of the tile
    ((1,), 100, 100, 8),
]


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("case", PYTORCH_CASES, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}-d{c[3]}")
def test_flash_pytorch(adapters, kernel_device, case, is_causal):
    function = adapters.get_flashattention_autograd_function_pytorch()
    check_flash(function, *case, is_causal, device=kernel_device)


@pytest.mark.parametrize("case", [((2,), 20, 45, 16), ((1, 2), 50, 7, 24)], ids=["20x45", "50x7"])
def test_flash_pytorch_more_or_fewer_keys(adapters, kernel_device, case):
    check_flash(adapters.get_flashattention_autograd_function_pytorch(), *case, False, device=kernel_device)


def test_flash_pytorch_non_contiguous_and_bf16(adapters, kernel_device):
    function = adapters.get_flashattention_autograd_function_pytorch()
    check_flash(function, (2, 3), 19, 19, 16, True, transpose=True, device=kernel_device)
    check_flash(function, (2,), 40, 40, 32, True, dtype=torch.bfloat16, device=kernel_device)


# The interpreter runs every program one after another in numpy: keep these small.
TRITON_CASES = [
    ((2,), 1, 1, 16, False),
    ((2,), 17, 17, 16, False),
    ((2,), 17, 17, 16, True),
    ((1, 2), 33, 33, 32, True),  # batch and head dims
    ((1,), 70, 70, 16, True),
    ((1,), 20, 45, 24, False),  # more keys than queries, head dim not a power of two
]


@pytest.mark.parametrize(
    "case", TRITON_CASES, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}-d{c[3]}-{'causal' if c[4] else 'full'}"
)
def test_flash_triton(adapters, kernel_device, case):
    check_flash(adapters.get_flashattention_autograd_function_triton(), *case, device=kernel_device)


def test_flash_triton_non_contiguous_and_bf16(adapters, kernel_device):
    function = adapters.get_flashattention_autograd_function_triton()
    check_flash(function, (1, 2), 19, 19, 16, True, transpose=True, device=kernel_device)
    check_flash(function, (2,), 24, 24, 16, True, dtype=torch.bfloat16, device=kernel_device)


@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_flash_triton_larger(adapters, kernel_device, is_causal):
    function = adapters.get_flashattention_autograd_function_triton()
    check_flash(function, (2, 2), 70, 70, 32, is_causal, device=kernel_device)


@pytest.mark.parametrize("impl", ["pytorch", "triton"])
def test_triton_and_pytorch_agree(adapters, kernel_device, impl):
    # The two implementations against each other on one odd-sized causal case.
    other = "triton" if impl == "pytorch" else "pytorch"
    q, k, v, _ = (t.to(kernel_device) for t in make_inputs((2,), 21, 21, 16, torch.float32, seed=3))
    ours = getattr(adapters, f"get_flashattention_autograd_function_{impl}")().apply(q, k, v, True)
    theirs = getattr(adapters, f"get_flashattention_autograd_function_{other}")().apply(q, k, v, True)
    torch.testing.assert_close(ours, theirs, **tolerance(torch.float32, kernel_device))


def test_mismatched_shapes_raise():
    from systems.flash_attention import FlashAttentionPyTorch

    q, k = torch.randn(2, 5, 16), torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="flash attention"):
        FlashAttentionPyTorch.apply(q, k, k, False)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_flash_triton_cuda(adapters, dtype, is_causal):
    # Natively compiled kernels at model-like sizes, against SDPA on the GPU (fp32 accumulation).
    function = adapters.get_flashattention_autograd_function_triton()
    q, k, v, do = (t.cuda() for t in make_inputs((2, 4), 1000, 1000, 64, dtype))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = function.apply(q, k, v, is_causal)
    out.backward(do)
    grads = [t.grad for t in (q, k, v)]
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = F.scaled_dot_product_attention(q32, k32, v32, is_causal=is_causal)
    ref.backward(do.float())
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(out.float(), ref, **tol)
    for ours, theirs in zip(grads, (q32.grad, k32.grad, v32.grad)):
        torch.testing.assert_close(ours.float(), theirs, **tol)
