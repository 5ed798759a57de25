"""FLOPs and parameter accounting for unit 1's Transformer, matmul by matmul.

Handout section "Accounting" (and Kaplan et al. 2020, table 1; Hoffmann et al. 2022, appendix F).
A matmul of an ``(m, k)`` by a ``(k, n)`` matrix costs ``2·m·k·n`` FLOPs (one multiply and one add
per term). Per token of a forward pass, one block of a decoder with ``d = d_model``,
``h = num_heads``, ``g = num_kv_heads``, ``d_head = d / h``, ``f = ffn_dim`` and context ``T`` costs

    q and o projections     2·d·d  each
    k and v projections     2·d·(g·d_head)  each      (grouped-query attention shrinks these)
    QKᵀ scores              2·T·d      (each query against T keys, summed over heads)
    attention-weighted V    2·T·d
    feed-forward            swiglu: 3 · 2·d·f   (w1, w3, w2);  silu/gelu: 2 · 2·d·f

and the output head costs ``2·d·vocab_size``. The backward pass costs twice the forward (one matmul
for the input gradient, one for the weight gradient), so training costs ``3 ×`` forward: the
familiar ``6·N·D`` rule is this count with the attention terms dropped and ``N`` the matmul weights.

Worked example (d_model=64, 2 layers, 4 heads, swiglu f=192, vocab 1000, T=128): per layer
4 projections × 8,192 + 2 attention matmuls × 16,384 + 3 ffn matmuls × 24,576 = 139,264, so
2 × 139,264 + head 128,000 = 406,528 FLOPs per token::

    >>> from basics.model import ModelConfig
    >>> config = ModelConfig(vocab_size=1000, context_length=128, d_model=64, num_layers=2, num_heads=4)
    >>> forward_flops_per_token(config)
    406528
    >>> count_parameters(config).total
    234816

Simplifications: only matmuls are counted (norms, softmax, RoPE, residual adds and the embedding
lookup are O(d) per token and ignored, as ``FlopCounterMode`` ignores them); attention is counted as
executed -- every query against the full context of ``T`` keys, masked entries included -- unless
``causal=True`` asks for the useful work only (query ``i`` sees ``i`` keys: ``(T + 1) / 2`` on average).

The count itself lives in ``basics/accounting.py`` (unit 1 asks for it, and ``ModelConfig`` uses it);
this module re-exports it and adds what unit 3 does with it: training FLOPs, ``6·N·D`` beside the
exact count, a printable table, and :func:`measured_training_flops`, which asks PyTorch's
``FlopCounterMode`` what a real forward and backward pass executed.
"""

from __future__ import annotations

import torch

from basics.accounting import (
    MatmulTerm,
    ParameterCounts,
    count_parameters,
    flops_breakdown,
    forward_flops_per_token,
)
from basics.model import ModelConfig

__all__ = [
    "MatmulTerm",
    "ParameterCounts",
    "count_parameters",
    "flops_breakdown",
    "format_flops_table",
    "forward_flops",
    "forward_flops_per_token",
    "measured_training_flops",
    "six_nd",
    "training_flops",
]


def forward_flops(
    config: ModelConfig, batch_size: int, context_length: int | None = None, causal: bool = False
) -> int:
    """Forward matmul FLOPs of one ``(batch_size, context_length)`` batch, as executed."""
    T = config.context_length if context_length is None else int(context_length)
    return batch_size * T * forward_flops_per_token(config, T, causal)


def training_flops(
    config: ModelConfig, tokens: float, context_length: int | None = None, causal: bool = False
) -> float:
    """Exact-count training FLOPs for ``tokens`` tokens: forward + backward (2× forward) = 3× forward."""
    return 3 * forward_flops_per_token(config, context_length, causal) * float(tokens)


def six_nd(config: ModelConfig, tokens: float, non_embedding: bool = True) -> float:
    """The ``C ≈ 6·N·D`` approximation (Kaplan et al. 2020, eq. 2.1)."""
    counts = count_parameters(config)
    n = counts.non_embedding if non_embedding else counts.total
    return 6.0 * n * float(tokens)


def measured_training_flops(model: torch.nn.Module, token_ids: torch.Tensor) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs that PyTorch executes for ``model(token_ids)``, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (2·m·k·n per matmul, like this module).

    The check a student runs on the accounting: for a ``(batch, seq)`` input the first number is
    ``batch · seq · forward_flops_per_token(config, seq)`` and the second three times that, since
    every matmul has an input-gradient and a weight-gradient matmul of its size in the backward pass.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            model(token_ids)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model(token_ids).float().square().mean().backward()  # any scalar of the logits will do
    model.zero_grad(set_to_none=True)
    return forward, counter.get_total_flops()


# ----------------------------------------------------------------------------------------------
# The printable table


def format_flops_table(
    config: ModelConfig, tokens: float | None = None, context_length: int | None = None, causal: bool = False
) -> str:
    """A table of forward FLOPs per token by matmul, then parameter counts and 6ND vs the exact count.

    The last lines show where 6·N·D and the exact count differ: 6·N·D has no attention-score terms
    (they grow with context) and counts non-matmul parameters (norms); with N = non-embedding
    parameters it also leaves out the output head, a real matmul that dominates small models; with
    N = total it charges the embedding lookup, which is not a matmul.
    """
    T = config.context_length if context_length is None else int(context_length)
    tokens = float(config.context_length if tokens is None else tokens)
    terms = flops_breakdown(config, T, causal)
    total = sum(t.flops for t in terms)
    lines = [f"forward FLOPs per token (context {T}{', causal' if causal else ''})"]
    lines.append(f"{'matmul':<18} {'per layer':>14} {'x':>4} {'total':>14} {'share':>7}")
    for t in terms:
        lines.append(
            f"{t.name:<18} {t.flops_per_layer:>14,} {t.layers:>4} {t.flops:>14,} {t.flops / total:>7.1%}"
        )
    lines.append(f"{'forward total':<18} {'':>14} {'':>4} {total:>14,} {1:>7.1%}")
    counts = count_parameters(config)
    lines.append("")
    lines.append(
        f"parameters: total {counts.total:,}  non-embedding {counts.non_embedding:,}  "
        f"embeddings and head {counts.embedding:,}"
    )
    exact = training_flops(config, tokens, T, causal)
    lines.append(f"training FLOPs for D = {tokens:,.0f} tokens:")
    lines.append(f"  exact (3 x forward matmuls)   {exact:>14.4e}")
    for label, non_embedding in (("6ND, N = non-embedding", True), ("6ND, N = total", False)):
        approx = six_nd(config, tokens, non_embedding)
        lines.append(f"  {label:<28}  {approx:>14.4e}  ({approx / exact - 1:+.1%} vs exact)")
    attention_share = sum(t.flops for t in terms if t.depends_on_context) / total
    lines.append(f"  attention-score share of the exact count: {attention_share:.1%} (absent from 6ND)")
    return "\n".join(lines)
