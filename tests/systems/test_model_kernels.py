"""The unit-1 model trains with the unit-2 kernels selected and gives the reference losses.

A tiny TransformerLM is built twice from the same weights: once with the reference RMSNorm and
attention, once with ``norm_impl`` / ``attention_impl`` naming our kernels, both on ``kernel_device``
(a CUDA GPU when there is one; otherwise the CPU, where the Triton kernels run in the interpreter). Both take the same AdamW steps on the same random batch; the losses,
logits and final parameters must agree. Tolerance: rtol = atol = 1e-4 in fp32 (the kernels sum in a
different order than the reference; a few steps of AdamW amplify fp32 rounding only slightly).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

# Sequence length 20 is not a multiple of the kernels' tiles; head dim 16, hidden size 32.
CONFIG = dict(vocab_size=97, context_length=24, d_model=32, num_layers=2, num_heads=2, d_ff=64)
BATCH, SEQ, STEPS = 2, 20, 3


def train_losses(model, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    losses, first_logits = [], None
    tokens = torch.randint(0, CONFIG["vocab_size"], (BATCH, SEQ + 1), generator=gen).to(
        device
    )  # fit one batch
    for _ in range(STEPS):
        logits = model(tokens[:, :-1])  # (batch, seq, vocab)
        if first_logits is None:
            first_logits = logits.detach().clone()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return torch.tensor(losses), first_logits.cpu()


@pytest.mark.parametrize(
    "norm_impl, attention_impl",
    [("triton", "flash_triton"), ("pytorch_autograd", "flash_pytorch")],
)
def test_model_trains_with_kernels(adapters, kernel_device, norm_impl, attention_impl):
    torch.manual_seed(0)
    reference = adapters.make_transformer_lm("reference", "reference", **CONFIG).to(kernel_device)
    kernels = adapters.make_transformer_lm(norm_impl, attention_impl, **CONFIG).to(kernel_device)
    kernels.load_state_dict(reference.state_dict())  # same weights: the impls add no parameters

    reference_losses, reference_logits = train_losses(reference, kernel_device)
    kernel_losses, kernel_logits = train_losses(kernels, kernel_device)

    torch.testing.assert_close(kernel_logits, reference_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(kernel_losses, reference_losses, rtol=1e-4, atol=1e-4)
    assert kernel_losses[-1] < kernel_losses[0], "the loss should fall while fitting one batch"
    for (name, p_ref), (_, p_ker) in zip(reference.named_parameters(), kernels.named_parameters()):
        torch.testing.assert_close(
            p_ker, p_ref, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}"
        )
