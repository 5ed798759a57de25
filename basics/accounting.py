"""Parameters and forward FLOPs of a :class:`~basics.model.ModelConfig`: the one place they are counted.

Handout (assignment 1) section "Transformer LM resource accounting". ``ModelConfig.num_parameters``
and ``ModelConfig.flops_per_token`` call this module, and so does unit 3's ``scaling.flops``,
which teaches the same count matmul by matmul and sets the ``6·N·D`` rule beside it.

A matmul of an ``(m, k)`` by a ``(k, n)`` matrix costs ``2·m·k·n`` FLOPs, so per token a weight
matrix of ``k × n`` entries costs ``2·k·n`` and attention over a context of ``T`` keys costs
``2·T·d_model`` for ``QKᵀ`` and again for the weighted sum of ``V``. Only matmuls are counted:
norms, softmax, RoPE, residual adds and the embedding lookup are O(d_model) per token (and
``torch.utils.flop_counter.FlopCounterMode``, which the graders compare against, ignores them too).

    >>> from basics.model import ModelConfig
    >>> config = ModelConfig(vocab_size=1000, context_length=128, d_model=64, num_layers=2, num_heads=4)
    >>> count_parameters(config).total, count_parameters(config).non_embedding
    (234816, 106816)
    >>> forward_flops_per_token(config)  # 2 x (139,264 per layer) + head 2*64*1000
    406528
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model imports this module; a config is all we read
    from basics.model import ModelConfig


@dataclass(frozen=True)
class ParameterCounts:
    """Where the parameters are. ``non_embedding`` is Kaplan et al.'s N: the blocks and the final
    norm, leaving out the token and position embeddings and the output head."""

    token_embedding: int
    position_embedding: int
    attention: int  # all layers: q, k, v, o
    feed_forward: int  # all layers
    norms: int  # two per block, plus the final norm of a pre-norm model
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


def _matrices_per_ffn(config: ModelConfig) -> int:
    return 3 if config.ffn == "swiglu" else 2  # swiglu: w1 (gate), w3 (up), w2 (down)


def count_parameters(config: ModelConfig) -> ParameterCounts:
    """Parameter counts of the bias-free decoder (a tied head is counted once, as the embedding)."""
    d, kv_dim = config.d_model, config.kv_heads * config.d_head
    per_norm = {"rmsnorm": d, "layernorm": 2 * d, "none": 0}[config.norm]  # gain (and bias)
    # Post-norm blocks already end in a norm, so only a pre-norm model has a final one.
    num_norms = 2 * config.num_layers + (1 if config.norm_position == "pre" else 0)
    return ParameterCounts(
        token_embedding=config.vocab_size * d,
        position_embedding=config.context_length * d if config.positions == "learned" else 0,
        attention=config.num_layers * (2 * d * d + 2 * d * kv_dim),  # q, o: d x d; k, v: d x kv_dim
        feed_forward=config.num_layers * _matrices_per_ffn(config) * d * config.ffn_dim,
        norms=per_norm * num_norms,
        output_head=0 if config.tie_embeddings else d * config.vocab_size,
    )


@dataclass(frozen=True)
class MatmulTerm:
    """One kind of matmul in the forward pass: its FLOPs per token in one layer, times ``layers``."""

    name: str
    flops_per_layer: int  # forward FLOPs per token, one occurrence
    layers: int  # how many times it occurs (num_layers, or 1 for the head)
    depends_on_context: bool = False  # attention scores grow with the context; weights do not

    @property
    def flops(self) -> int:
        return self.flops_per_layer * self.layers


def flops_breakdown(
    config: ModelConfig, context_length: int | None = None, causal: bool = False
) -> list[MatmulTerm]:
    """Forward matmul FLOPs per token, one :class:`MatmulTerm` per matmul kind.

    ``context_length`` defaults to the config's. Attention is counted as executed (every query
    against all ``T`` keys, masked ones included) unless ``causal=True`` asks for the useful work
    only: query ``i`` sees ``i`` keys, ``(T + 1) / 2`` on average.
    """
    T = config.context_length if context_length is None else int(context_length)
    if T <= 0:
        raise ValueError(f"context_length must be positive, got {T}")
    d, f, L = config.d_model, config.ffn_dim, config.num_layers
    kv_dim = config.kv_heads * config.d_head  # grouped-query attention shrinks k and v
    keys_times_2 = (T + 1) if causal else 2 * T  # 2 x keys per query, kept an integer
    terms = [
        MatmulTerm("q projection", 2 * d * d, L),
        MatmulTerm("k projection", 2 * d * kv_dim, L),
        MatmulTerm("v projection", 2 * d * kv_dim, L),
        MatmulTerm("QK^T scores", keys_times_2 * d, L, depends_on_context=True),
        MatmulTerm("attention x V", keys_times_2 * d, L, depends_on_context=True),
        MatmulTerm("o projection", 2 * d * d, L),
    ]
    if config.ffn == "swiglu":
        terms += [MatmulTerm("ffn w1 (gate)", 2 * d * f, L), MatmulTerm("ffn w3 (up)", 2 * d * f, L)]
    else:
        terms += [MatmulTerm("ffn w1 (up)", 2 * d * f, L)]
    terms += [MatmulTerm("ffn w2 (down)", 2 * f * d, L)]
    # The head is a matmul whether or not its weight is tied to the embedding.
    terms.append(MatmulTerm("output head", 2 * d * config.vocab_size, 1))
    return terms


def forward_flops_per_token(
    config: ModelConfig, context_length: int | None = None, causal: bool = False
) -> int:
    """Total forward matmul FLOPs per token (see :func:`flops_breakdown`)."""
    return sum(term.flops for term in flops_breakdown(config, context_length, causal))
