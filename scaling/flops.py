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

    >>> from types import SimpleNamespace
    >>> config = SimpleNamespace(vocab_size=1000, context_length=128, d_model=64, num_layers=2, num_heads=4)
    >>> forward_flops_per_token(config)
    406528
    >>> count_parameters(config).total
    234816

Simplifications: only matmuls are counted (norms, softmax, RoPE, residual adds and the embedding
lookup are O(d) per token and ignored, as ``FlopCounterMode`` ignores them); attention is counted as
executed -- every query against the full context of ``T`` keys, masked entries included -- unless
``causal=True`` asks for the useful work only (query ``i`` sees ``i`` keys: ``(T + 1) / 2`` on average).

The config is duck-typed: anything with ``vocab_size, context_length, d_model, num_layers,
num_heads`` and optionally ``num_kv_heads, d_ff/ffn_dim, ffn, norm, norm_position, positions,
tie_embeddings`` works (``basics.model.ModelConfig`` is the intended one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_GATED_FFNS = ("swiglu",)
_PLAIN_FFNS = ("silu", "gelu")


@dataclass(frozen=True)
class Shape:
    """The sizes the accounting needs, resolved from a model config (defaults filled in)."""

    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    ffn_dim: int
    ffn: str
    norm: str
    norm_position: str
    positions: str
    tie_embeddings: bool

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.d_head


def default_ffn_dim(d_model: int, ffn: str) -> int:
    """The course default: 8/3·d_model rounded up to a multiple of 64 for swiglu, else 4·d_model."""
    if ffn in _GATED_FFNS:
        return -(-(8 * d_model) // (3 * 64)) * 64
    return 4 * d_model


def resolve_shape(config: Any) -> Shape:
    """Read a model config into a :class:`Shape`, checking the sizes make sense."""
    ffn = getattr(config, "ffn", "swiglu")
    if ffn not in _GATED_FFNS + _PLAIN_FFNS:
        raise ValueError(f"unknown ffn {ffn!r}; expected one of {_GATED_FFNS + _PLAIN_FFNS}")
    d_model, num_heads = int(config.d_model), int(config.num_heads)
    num_kv_heads = getattr(config, "num_kv_heads", None) or num_heads
    ffn_dim = (
        getattr(config, "ffn_dim", None) or getattr(config, "d_ff", None) or default_ffn_dim(d_model, ffn)
    )
    sizes = {
        "vocab_size": config.vocab_size,
        "context_length": config.context_length,
        "d_model": d_model,
        "num_layers": config.num_layers,
        "num_heads": num_heads,
        "num_kv_heads": num_kv_heads,
        "ffn_dim": ffn_dim,
    }
    for name, value in sizes.items():
        if int(value) <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads={num_heads} is not divisible by num_kv_heads={num_kv_heads}")
    return Shape(
        **{k: int(v) for k, v in sizes.items()},
        ffn=ffn,
        norm=getattr(config, "norm", "rmsnorm"),
        norm_position=getattr(config, "norm_position", "pre"),
        positions=getattr(config, "positions", "rope"),
        tie_embeddings=bool(getattr(config, "tie_embeddings", False)),
    )


# ----------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class ParameterCounts:
    """Where the parameters are. ``non_embedding`` is Kaplan et al.'s N: the blocks and the final
    norm, leaving out the token and position embeddings and the output head (as
    ``ModelConfig.num_parameters(non_embedding=True)`` does)."""

    token_embedding: int
    position_embedding: int
    attention: int  # all layers: q, k, v, o
    feed_forward: int  # all layers
    norms: int  # all layers plus the final norm (pre-norm only)
    output_head: int  # 0 when tied to the token embedding

    @property
    def embedding(self) -> int:
        """Token and position embeddings and the (untied) output head."""
        return self.token_embedding + self.position_embedding + self.output_head

    @property
    def non_embedding(self) -> int:
        return self.attention + self.feed_forward + self.norms

    @property
    def total(self) -> int:
        return self.embedding + self.non_embedding


def _norm_parameters(shape: Shape) -> int:
    # RMSNorm: one gain per feature; LayerNorm: gain and bias; "none": nothing.
    per_norm = {"rmsnorm": shape.d_model, "layernorm": 2 * shape.d_model, "none": 0}
    if shape.norm not in per_norm:
        raise ValueError(f"unknown norm {shape.norm!r}; expected one of {tuple(per_norm)}")
    # Two per block; pre-norm adds a final norm (post-norm blocks already end in one).
    final = 1 if shape.norm_position == "pre" else 0
    return per_norm[shape.norm] * (2 * shape.num_layers + final)


def count_parameters(config: Any) -> ParameterCounts:
    """Parameter counts of the bias-free decoder (two norms per block, a final norm if pre-norm)."""
    s = resolve_shape(config)
    matrices_per_ffn = 3 if s.ffn in _GATED_FFNS else 2
    return ParameterCounts(
        token_embedding=s.vocab_size * s.d_model,
        position_embedding=s.context_length * s.d_model if s.positions == "learned" else 0,
        attention=s.num_layers * (2 * s.d_model * s.d_model + 2 * s.d_model * s.kv_dim),
        feed_forward=s.num_layers * matrices_per_ffn * s.d_model * s.ffn_dim,
        norms=_norm_parameters(s),
        output_head=0 if s.tie_embeddings else s.d_model * s.vocab_size,
    )


# ----------------------------------------------------------------------------------------------
# Forward FLOPs, matmul by matmul


@dataclass(frozen=True)
class MatmulTerm:
    """One kind of matmul in the forward pass: its FLOPs per token in one layer, times ``layers``."""

    name: str
    flops_per_layer: int  # forward FLOPs per token, one occurrence
    layers: int  # how many times it occurs (num_layers, or 1 for the head)
    depends_on_context: bool = False

    @property
    def flops(self) -> int:
        return self.flops_per_layer * self.layers


def flops_breakdown(config: Any, context_length: int | None = None, causal: bool = False) -> list[MatmulTerm]:
    """Forward matmul FLOPs per token, one :class:`MatmulTerm` per matmul kind.

    ``context_length`` defaults to the config's; ``causal=True`` counts only the unmasked half of
    the attention matrices (average ``(T + 1) / 2`` keys per query) instead of what is executed.
    """
    s = resolve_shape(config)
    T = s.context_length if context_length is None else int(context_length)
    if T <= 0:
        raise ValueError(f"context_length must be positive, got {T}")
    d, f, L = s.d_model, s.ffn_dim, s.num_layers
    # Keys seen per query, summed over the sequence and divided by T; integer-exact for causal.
    keys_times_2 = (T + 1) if causal else 2 * T  # = 2 x average keys per query
    terms = [
        MatmulTerm("q projection", 2 * d * d, L),
        MatmulTerm("k projection", 2 * d * s.kv_dim, L),
        MatmulTerm("v projection", 2 * d * s.kv_dim, L),
        MatmulTerm("QK^T scores", keys_times_2 * d, L, depends_on_context=True),
        MatmulTerm("attention x V", keys_times_2 * d, L, depends_on_context=True),
        MatmulTerm("o projection", 2 * d * d, L),
    ]
    if s.ffn in _GATED_FFNS:
        terms += [
            MatmulTerm("ffn w1 (gate)", 2 * d * f, L),
            MatmulTerm("ffn w3 (up)", 2 * d * f, L),
            MatmulTerm("ffn w2 (down)", 2 * f * d, L),
        ]
    else:
        terms += [MatmulTerm("ffn w1 (up)", 2 * d * f, L), MatmulTerm("ffn w2 (down)", 2 * f * d, L)]
    terms.append(MatmulTerm("output head", 2 * d * s.vocab_size, 1))
    return terms


def forward_flops_per_token(config: Any, context_length: int | None = None, causal: bool = False) -> int:
    """Total forward matmul FLOPs per token (see :func:`flops_breakdown`)."""
    return sum(term.flops for term in flops_breakdown(config, context_length, causal))


def forward_flops(
    config: Any, batch_size: int, context_length: int | None = None, causal: bool = False
) -> int:
    """Forward matmul FLOPs of one ``(batch_size, context_length)`` batch, as executed."""
    T = resolve_shape(config).context_length if context_length is None else int(context_length)
    return batch_size * T * forward_flops_per_token(config, T, causal)


def training_flops(
    config: Any, tokens: float, context_length: int | None = None, causal: bool = False
) -> float:
    """Exact-count training FLOPs for ``tokens`` tokens: forward + backward (2× forward) = 3× forward."""
    return 3 * forward_flops_per_token(config, context_length, causal) * float(tokens)


def six_nd(config: Any, tokens: float, non_embedding: bool = True) -> float:
    """The ``C ≈ 6·N·D`` approximation (Kaplan et al. 2020, eq. 2.1)."""
    counts = count_parameters(config)
    n = counts.non_embedding if non_embedding else counts.total
    return 6.0 * n * float(tokens)


# ----------------------------------------------------------------------------------------------
# The printable table


def format_flops_table(
    config: Any, tokens: float | None = None, context_length: int | None = None, causal: bool = False
) -> str:
    """A table of forward FLOPs per token by matmul, then parameter counts and 6ND vs the exact count.

    The last lines show where 6·N·D and the exact count differ: 6·N·D has no attention-score terms
    (they grow with context) and counts non-matmul parameters (norms); with N = non-embedding
    parameters it also leaves out the output head, a real matmul that dominates small models; with
    N = total it charges the embedding lookup, which is not a matmul.
    """
    s = resolve_shape(config)
    T = s.context_length if context_length is None else int(context_length)
    tokens = float(s.context_length if tokens is None else tokens)
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
