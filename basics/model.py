"""The Transformer language model: the one model every unit of the course trains.

Follows the assignment 1 handout (section 3): a pre-norm decoder-only Transformer with RMSNorm,
SwiGLU feed-forward blocks and rotary position embeddings (RoPE), written from ``nn.Parameter`` and
tensor ops so that every step is visible. Read it top to bottom::

    token ids -> token_embeddings -> num_layers x TransformerBlock -> ln_final -> lm_head -> logits

Beyond the handout, :class:`ModelConfig` carries the course's ablation switches (norm type and
position, feed-forward type, position encoding, tied embeddings, dropout), grouped-query attention
(``num_kv_heads``), and one switch per implementation choice: ``norm_impl`` (``"torch"``: torch's
fused ``F.rms_norm``), ``attention_impl`` (``"sdpa"``: ``F.scaled_dot_product_attention``) and
``rope_impl`` (``"complex"``: RoPE as one complex multiply). The unit-2 kernels (``norm_impl="triton"``,
``attention_impl="flash_triton"``, ...) live in ``systems/``, which registers them in :data:`KERNELS`
when it is imported; ``basics`` never imports ``systems``. Every switch keeps the reference path
beside it, and the tests compare them.

Deliberate simplifications: dropout is applied to the residual branches only (not to attention
probabilities); the KV cache is a plain preallocated buffer per layer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from basics.accounting import count_parameters, forward_flops_per_token

# The valid choices of each switch are written once, here; validation and the CLI read them.
NormType = Literal["rmsnorm", "layernorm", "none"]
NormPosition = Literal["pre", "post"]
FFNType = Literal["swiglu", "silu", "gelu"]
PositionType = Literal["rope", "learned", "none"]
NormImpl = Literal["reference", "torch", "pytorch_autograd", "triton"]
AttentionImpl = Literal["reference", "sdpa", "flash_pytorch", "flash_triton"]
RopeImpl = Literal["reference", "complex"]

# Implementations that basics does not provide itself: (switch, choice) -> the torch.autograd.Function
# that computes it. `systems` fills this table when it is imported (see systems/__init__.py), so the
# model can use the unit-2 kernels without basics importing systems (dependencies flow one way).
KERNELS: dict[tuple[str, str], type[torch.autograd.Function]] = {}
_EXTERNAL = {("norm_impl", "pytorch_autograd"), ("norm_impl", "triton")} | {
    ("attention_impl", "flash_pytorch"),
    ("attention_impl", "flash_triton"),
}


def register_kernel(switch: str, choice: str, function: type[torch.autograd.Function]) -> None:
    """Make ``ModelConfig(<switch>=<choice>)`` use ``function`` (called as ``function.apply(...)``)."""
    if (switch, choice) not in _EXTERNAL:
        raise ValueError(f"{switch}={choice!r} is not a kernel choice; kernel choices: {sorted(_EXTERNAL)}")
    KERNELS[switch, choice] = function


def _kernel(switch: str, choice: str) -> type[torch.autograd.Function] | None:
    """The registered kernel for a choice, None for the ones basics computes itself."""
    if (switch, choice) not in _EXTERNAL:
        return None
    if (switch, choice) not in KERNELS:
        raise ImportError(
            f"{switch}={choice!r} is a unit-2 kernel that is not registered: `import systems` first "
            "(importing it registers its kernels)"
        )
    return KERNELS[switch, choice]


def _check_choice(name: str, value: str, choices: type) -> None:
    if value not in get_args(choices):
        raise ValueError(f"ModelConfig.{name} must be one of {', '.join(get_args(choices))}; got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture. Validated on construction."""

    vocab_size: int = 10_000  # number of token ids
    context_length: int = 256  # longest sequence the model sees (RoPE table size)
    d_model: int = 512  # width of the residual stream
    num_layers: int = 4  # number of Transformer blocks
    num_heads: int = 16  # attention heads (query heads under GQA)
    d_ff: int | None = None  # feed-forward width; None: 8/3*d_model rounded up to 64 (swiglu), else 4*d_model
    rope_theta: float = 10_000.0  # RoPE base
    num_kv_heads: int | None = None  # key/value heads for grouped-query attention; None: num_heads
    norm: NormType = "rmsnorm"  # rmsnorm | layernorm | none
    norm_position: NormPosition = "pre"  # pre | post
    ffn: FFNType = "swiglu"  # swiglu | silu | gelu
    positions: PositionType = "rope"  # rope | learned | none
    tie_embeddings: bool = False  # share token_embeddings.weight with lm_head.weight
    dropout: float = 0.0  # residual dropout probability
    norm_eps: float = 1e-5  # epsilon inside the norms
    norm_impl: NormImpl = "reference"  # reference | torch | pytorch_autograd | triton (last two: rmsnorm)
    attention_impl: AttentionImpl = "reference"  # reference | sdpa | flash_pytorch | flash_triton
    rope_impl: RopeImpl = "reference"  # reference (real arithmetic; torch.compile fuses it) | complex

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer; got {value!r}")
        if self.d_ff is not None and self.d_ff <= 0:
            raise ValueError(f"ModelConfig.d_ff must be positive; got {self.d_ff}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        kv = self.kv_heads
        if kv <= 0 or self.num_heads % kv:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({kv})")
        _check_choice("norm", self.norm, NormType)
        _check_choice("norm_position", self.norm_position, NormPosition)
        _check_choice("ffn", self.ffn, FFNType)
        _check_choice("positions", self.positions, PositionType)
        _check_choice("norm_impl", self.norm_impl, NormImpl)
        _check_choice("attention_impl", self.attention_impl, AttentionImpl)
        _check_choice("rope_impl", self.rope_impl, RopeImpl)
        if self.positions == "rope" and self.d_head % 2:
            raise ValueError(f"RoPE needs an even head dimension; d_model/num_heads = {self.d_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")
        # isfinite first: NaN fails no comparison, so `nan <= 0` alone would let it through.
        if not (math.isfinite(self.rope_theta) and math.isfinite(self.norm_eps)):
            raise ValueError(
                f"rope_theta and norm_eps must be finite; got {self.rope_theta}, {self.norm_eps}"
            )
        if self.rope_theta <= 0 or self.norm_eps <= 0:
            raise ValueError("rope_theta and norm_eps must be positive")
        if (self.norm_impl != "reference" and self.norm == "none") or (
            self.norm_impl not in ("reference", "torch") and self.norm != "rmsnorm"
        ):
            raise ValueError(f"norm_impl={self.norm_impl!r} does not apply to norm={self.norm!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def ffn_dim(self) -> int:
        """The feed-forward width actually used (resolves ``d_ff=None``)."""
        if self.d_ff is not None:
            return self.d_ff
        if self.ffn == "swiglu":  # 8/3 d_model keeps the parameter count of a 4x two-matrix FFN
            return 64 * math.ceil(8 * self.d_model / 3 / 64)
        return 4 * self.d_model

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count. ``non_embedding=True`` leaves out the token and position embeddings and
        the output head (Kaplan et al.'s N). Counted in basics/accounting.py, the one place."""
        counts = count_parameters(self)
        return counts.non_embedding if non_embedding else counts.total

    def flops_per_token(self, context_length: int | None = None) -> int:
        """Forward-pass matmul FLOPs per token at ``context_length`` (default: the full context);
        attention counted as executed. Counted in basics/accounting.py, the one place."""
        return forward_flops_per_token(self, context_length)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> ModelConfig:
        """The config :meth:`to_dict` saved. Configs saved before the implementation switches were
        split carry ``fast``; ``fast=True`` meant torch's RMSNorm and SDPA and the complex RoPE."""
        fields = dict(fields)
        if fields.pop("fast", False):
            if fields.get("norm_impl", "reference") == "reference" and fields.get("norm") != "none":
                fields["norm_impl"] = "torch"
            if fields.get("attention_impl", "reference") == "reference":
                fields["attention_impl"] = "sdpa"
            fields["rope_impl"] = "complex"
        return cls(**fields)


# ----------------------------------------------------------------------------- building blocks


class Linear(nn.Module):
    """y = x W^T with W of shape (out, in); no bias. Init: truncated normal, var 2/(in+out), +-3 sigma."""

    def __init__(self, in_features: int, out_features: int, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        # Stored (out, in), as torch stores it, so that checkpoints and HF exports need no transpose.
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        # Variance 2 / (in + out) keeps activations and gradients about the same size through the layer
        # (Glorot); truncating at 3 sigma drops the rare huge weights.
        std = math.sqrt(2.0 / (in_features + out_features))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        return x @ self.weight.T  # (..., d_in) @ (d_in, d_out) -> (..., d_out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class Embedding(nn.Module):
    """A lookup table of shape (num_embeddings, embedding_dim). Init: truncated N(0, 1) at +-3."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        nn.init.trunc_normal_(self.weight, mean=0.0, std=1.0, a=-3.0, b=3.0)

    def forward(self, token_ids: Int[Tensor, ...]) -> Float[Tensor, "... d_model"]:
        return self.weight[token_ids]  # row i of the table for token id i: (...) -> (..., d_model)


class RMSNorm(nn.Module):
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g  (Zhang & Sennrich, 2019).

    Computed in fp32 and cast back: squaring bf16 activations loses too much precision. ``impl``
    picks the same math from torch (``F.rms_norm``) or a registered unit-2 kernel."""

    def __init__(
        self, d_model: int, eps: float = 1e-5, device=None, dtype=None, impl: NormImpl = "reference"
    ):
        super().__init__()
        _check_choice("norm_impl", impl, NormImpl)
        self.eps, self.impl = eps, impl
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))  # g, starts as identity
        self._kernel = _kernel("norm_impl", impl)  # a unit-2 kernel, or None for basics' own choices

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        if self.impl == "torch":  # the same formula as one torch op
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        if self._kernel is not None:  # a unit-2 kernel registered by systems
            return self._kernel.apply(x, self.weight, self.eps)
        in_dtype = x.dtype
        x = x.float()
        # eps inside the square root: a row of zeros gives 0 / sqrt(eps) = 0, not 0 / 0.
        rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return (x / rms * self.weight.float()).to(in_dtype)  # g scales each feature


class LayerNorm(nn.Module):
    """LayerNorm (Ba et al., 2016) for the norm ablation: (x - mean) / sqrt(var + eps) * g + b, in fp32.
    ``impl="torch"`` computes the same with ``F.layer_norm``."""

    def __init__(
        self, d_model: int, eps: float = 1e-5, device=None, dtype=None, impl: NormImpl = "reference"
    ):
        super().__init__()
        if impl not in ("reference", "torch"):
            raise ValueError(f"LayerNorm impl must be reference or torch; got {impl!r}")
        self.eps, self.impl = eps, impl
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_model, device=device, dtype=dtype))

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        in_dtype = x.dtype
        x = x.float()  # fp32 statistics: the variance of bf16 activations would round badly
        if self.impl == "torch":
            shape = (x.shape[-1],)
            return F.layer_norm(x, shape, self.weight.float(), self.bias.float(), self.eps).to(in_dtype)
        mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)  # biased (divide by d), as torch's LayerNorm
        return ((x - mean) / torch.sqrt(var + self.eps) * self.weight.float() + self.bias.float()).to(
            in_dtype
        )


def silu(x: Tensor) -> Tensor:
    """SiLU(x) = x * sigmoid(x)."""
    return x * torch.sigmoid(x)


def gelu(x: Tensor) -> Tensor:
    """GELU(x) = x * Phi(x), Phi the standard normal CDF (the exact form, not the tanh approximation)."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class SwiGLU(nn.Module):
    """FFN(x) = W2(SiLU(W1 x) * W3 x)  (Shazeer, 2020)."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        # W1 x is the gate, W3 x the value; torch.compile fuses silu and the product into one kernel.
        return self.w2(silu(self.w1(x)) * self.w3(x))


class FeedForward(nn.Module):
    """The two-matrix FFN of the ablations: W2(act(W1 x)) with act = SiLU or GELU."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", device=None, dtype=None):
        super().__init__()
        self.activation = activation
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        h = self.w1(x)  # (..., d_ff): up-project, apply the nonlinearity there, project back
        return self.w2(silu(h) if self.activation == "silu" else gelu(h))


class RotaryPositionalEmbedding(nn.Module):
    """RoPE (Su et al., 2021): rotate each interleaved pair (x[2k], x[2k+1]) of the feature dimension
    by the angle pos * theta^(-2k/d_k), so q.k depends on positions only through their difference.

    Worked example with d_k = 4, theta = 10_000: pair 0 turns by pos radians, pair 1 by pos/100.
    The vector (1, 0, 1, 0) at token position 2 becomes
    (cos 2, sin 2, cos 0.02, sin 0.02) = (-0.416, 0.909, 1.000, 0.020).

    ``impl="reference"`` rotates with real arithmetic (what torch.compile fuses into the
    surrounding kernel); ``impl="complex"`` is the same rotation as one complex multiply, the fastest
    form in eager mode, but Inductor cannot generate code for complex numbers.
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None, impl: RopeImpl = "reference"):
        super().__init__()
        _check_choice("rope_impl", impl, RopeImpl)
        self.impl = impl
        if d_k % 2:
            raise ValueError(f"RoPE needs an even dimension; got d_k={d_k}")
        # Pair k turns theta^(-2k/d_k) radians per position: fast for the first pairs, slower and slower
        # after, so nearby and far-apart positions are both told apart.
        inv_freq = theta ** (-torch.arange(0, d_k, 2, device=device, dtype=torch.float32) / d_k)  # (d_k/2,)
        angles = torch.outer(torch.arange(max_seq_len, device=device, dtype=torch.float32), inv_freq)
        # angles[pos, k] = pos * inv_freq[k]: (max_seq_len, d_k/2), computed once, looked up per call.
        # Tables are derived from theta, so they are not saved in the state dict.
        self.register_buffer("cos", angles.cos(), persistent=False)  # (max_seq_len, d_k/2)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(
        self, x: Float[Tensor, "... seq d_k"], token_positions: Int[Tensor, "... seq"]
    ) -> Float[Tensor, "... seq d_k"]:
        cos, sin = self.cos[token_positions], self.sin[token_positions]  # (..., seq, d_k/2)
        if self.impl == "complex":
            # Pair (a, b) is the complex number a + ib; rotating it is multiplying by cos + i sin.
            pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (..., seq, d_k/2)
            return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2).to(x.dtype)
        # In fp32: the angles of far positions are large and bf16 would round the rotation away.
        x_even, x_odd = x[..., 0::2].float(), x[..., 1::2].float()  # (..., seq, d_k/2) each
        # The 2x2 rotation [[cos, -sin], [sin, cos]] applied to every pair (x_even, x_odd).
        rotated = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
        return rotated.flatten(-2).to(x.dtype)  # re-interleave: (..., seq, d_k/2, 2) -> (..., seq, d_k)


def softmax(x: Float[Tensor, ...], dim: int) -> Float[Tensor, ...]:
    """exp(x - max) / sum(exp(x - max)) along ``dim``: subtracting the max keeps exp from overflowing
    and does not change the result. Computed in fp32 and cast back."""
    x32 = x.float()
    exp = torch.exp(x32 - x32.amax(dim=dim, keepdim=True))  # every exponent <= 0: no overflow
    return (exp / exp.sum(dim=dim, keepdim=True)).to(x.dtype)  # a row of -inf only would give 0/0 = nan


def scaled_dot_product_attention(
    Q: Float[Tensor, "... queries d_k"],
    K: Float[Tensor, "... keys d_k"],
    V: Float[Tensor, "... keys d_v"],
    mask: Bool[Tensor, "queries keys"] | None = None,
) -> Float[Tensor, "... queries d_v"]:
    """softmax(Q K^T / sqrt(d_k)) V, where ``mask`` True means *attend* (False positions get -inf)."""
    # Dividing by sqrt(d_k) keeps the scores' variance near 1 for unit-variance q, k, so the softmax
    # does not saturate into a one-hot as d_k grows.
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # (..., queries, keys)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: masked keys get no weight
    return softmax(scores, dim=-1) @ V  # (..., queries, keys) @ (..., keys, d_v) -> (..., queries, d_v)


def causal_mask(num_queries: int, num_keys: int, device=None) -> Bool[Tensor, "queries keys"]:
    """Query i (the last ``num_queries`` of ``num_keys`` positions) attends to keys 0..its own position."""
    offset = num_keys - num_queries  # the cached prefix before the queries (0 without a cache)
    q = torch.arange(num_queries, device=device)[:, None] + offset  # (queries, 1): absolute positions
    return q >= torch.arange(num_keys, device=device)[None, :]  # (queries, keys): key not in the future


class KVCache:
    """Keys and values of the positions seen so far, one preallocated buffer per layer, so each new
    token in generation costs one position instead of recomputing the whole prefix."""

    def __init__(self, num_layers: int, max_seq_len: int):
        self.max_seq_len = max_seq_len
        self.length = 0  # positions stored (advanced by TransformerLM.forward after all layers)
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    def update(
        self,
        layer: int,
        k: Float[Tensor, "batch kv_heads seq d_head"],
        v: Float[Tensor, "batch kv_heads seq d_head"],
    ) -> tuple[Tensor, Tensor]:
        """Store this step's k, v for ``layer`` and return all keys and values so far."""
        # The new positions go right after the ones already stored (all layers share `length`; the
        # model advances it once every layer has stored its keys for this step).
        end = self.length + k.shape[-2]
        if end > self.max_seq_len:
            raise ValueError(f"KV cache is full: {end} positions > max_seq_len {self.max_seq_len}")
        if self.keys[layer] is None:
            # Allocate the whole buffer on first use, with the batch, heads, dtype and device of k.
            shape = (*k.shape[:-2], self.max_seq_len, k.shape[-1])  # (batch, kv_heads, max_seq_len, d_head)
            self.keys[layer] = k.new_zeros(shape)
            self.values[layer] = v.new_zeros(shape)
        # Write in place (no torch.cat, so a step costs O(new positions), not O(prefix)) ...
        self.keys[layer][..., self.length : end, :] = k
        self.values[layer][..., self.length : end, :] = v
        # ... and hand back views of the filled prefix: (batch, kv_heads, end, d_head).
        return self.keys[layer][..., :end, :], self.values[layer][..., :end, :]


class MultiHeadSelfAttention(nn.Module):
    """Causal multi-head self-attention with RoPE on queries and keys.

    Heads are split from one projection each for q, k and v (rows ordered by head). With grouped-query
    attention (num_kv_heads < num_heads) each key/value head serves num_heads / num_kv_heads query heads.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        max_seq_len: int | None = None,
        theta: float | None = None,
        num_kv_heads: int | None = None,
        impl: AttentionImpl = "reference",
        device=None,
        dtype=None,
        rope_impl: RopeImpl = "reference",
    ):
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads or num_heads
        self.d_head = d_model // num_heads
        _check_choice("attention_impl", impl, AttentionImpl)
        self.impl = impl
        self.q_proj = Linear(d_model, num_heads * self.d_head, device=device, dtype=dtype)
        self.k_proj = Linear(d_model, self.num_kv_heads * self.d_head, device=device, dtype=dtype)
        self.v_proj = Linear(d_model, self.num_kv_heads * self.d_head, device=device, dtype=dtype)
        self.output_proj = Linear(num_heads * self.d_head, d_model, device=device, dtype=dtype)
        self.rope = None
        if theta is not None:
            if max_seq_len is None:
                raise ValueError("RoPE needs max_seq_len")
            self.rope = RotaryPositionalEmbedding(
                theta, self.d_head, max_seq_len, device=device, impl=rope_impl
            )
        self._kernel = _kernel("attention_impl", impl)

    def forward(
        self,
        x: Float[Tensor, "... seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
    ) -> Float[Tensor, "... seq d_model"]:
        seq = x.shape[-2]
        offset = kv_cache.length if kv_cache is not None else 0
        # Split the projections into heads; each head attends on its own d_head-wide slice.
        q = rearrange(self.q_proj(x), "... seq (heads d) -> ... heads seq d", heads=self.num_heads)
        k = rearrange(self.k_proj(x), "... seq (heads d) -> ... heads seq d", heads=self.num_kv_heads)
        v = rearrange(self.v_proj(x), "... seq (heads d) -> ... heads seq d", heads=self.num_kv_heads)
        # q: (..., heads, seq, d_head); k, v: (..., kv_heads, seq, d_head)
        if self.rope is not None:
            if token_positions is None:  # with a cache, the new tokens sit after the cached prefix
                token_positions = torch.arange(offset, offset + seq, device=x.device)
            positions = token_positions.unsqueeze(-2)  # (..., 1, seq): broadcast over the heads axis
            # Rotate q and k only: v carries content, and the rotation must not enter the output.
            q, k = self.rope(q, positions), self.rope(k, positions)
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (..., kv_heads, cached + seq, d_head)
        if self.num_kv_heads != self.num_heads:  # GQA: repeat each kv head for its group of query heads
            group = self.num_heads // self.num_kv_heads
            k = k.repeat_interleave(group, dim=-3)  # (..., heads, keys, d_head)
            v = v.repeat_interleave(group, dim=-3)
        out = self._attend(q, k, v)  # (..., heads, seq, d_head)
        # Concatenate the heads back into one vector per position for the output projection.
        return self.output_proj(rearrange(out, "... heads seq d -> ... seq (heads d)"))  # (..., seq, d_model)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # q: (..., heads, queries, d_head); k, v: (..., heads, keys, d_head) after the GQA repeat.
        num_queries, num_keys = q.shape[-2], k.shape[-2]
        aligned = num_queries == num_keys  # no cached prefix: the plain causal triangle
        if self._kernel is not None and aligned:
            return self._kernel.apply(q, k, v, True)  # a registered FlashAttention kernel, causal=True
        # The unit-2 kernels only know the aligned triangle; decoding with a cache falls back to SDPA.
        if self.impl == "sdpa" or (self._kernel is not None and not aligned):
            if aligned:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
            # is_causal aligns the triangle top-left, wrong when keys include a cached prefix: pass
            # the bottom-right mask explicitly (query i sees keys 0 .. offset + i).
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=causal_mask(num_queries, num_keys, q.device)
            )
        # The handout's reference: the whole (queries, keys) score matrix, masked and softmaxed.
        return scaled_dot_product_attention(q, k, v, causal_mask(num_queries, num_keys, q.device))


class TransformerBlock(nn.Module):
    """Pre-norm: z = x + attn(ln1(x)); y = z + ffn(ln2(z)).  Post-norm: z = ln1(x + attn(x)); y = ln2(z + ffn(z))."""

    def __init__(self, config: ModelConfig, device=None, dtype=None):
        super().__init__()
        self.post_norm = config.norm_position == "post"
        self.ln1 = make_norm(config, device=device, dtype=dtype)
        self.attn = MultiHeadSelfAttention(
            config.d_model,
            config.num_heads,
            max_seq_len=config.context_length,
            theta=config.rope_theta if config.positions == "rope" else None,
            num_kv_heads=config.kv_heads,
            impl=config.attention_impl,
            device=device,
            dtype=dtype,
            rope_impl=config.rope_impl,
        )
        self.ln2 = make_norm(config, device=device, dtype=dtype)
        if config.ffn == "swiglu":
            self.ffn = SwiGLU(config.d_model, config.ffn_dim, device=device, dtype=dtype)
        else:
            self.ffn = FeedForward(config.d_model, config.ffn_dim, config.ffn, device=device, dtype=dtype)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Float[Tensor, "batch seq d_model"],
        token_positions: Int[Tensor, "... seq"] | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
    ) -> Float[Tensor, "batch seq d_model"]:
        if self.post_norm:  # the original Transformer: normalise after each residual add
            z = self.ln1(x + self.dropout(self.attn(x, token_positions, kv_cache, layer)))
            return self.ln2(z + self.dropout(self.ffn(z)))
        # Pre-norm: each sub-layer sees a normalised input, and the residual stream x -> z -> y is a
        # clean sum, so gradients reach early layers undamped (Xiong et al., 2020).
        attended = self.attn(self.ln1(x), token_positions, kv_cache, layer)  # (batch, seq, d_model)
        z = x + self.dropout(attended)
        return z + self.dropout(self.ffn(self.ln2(z)))


def make_norm(config: ModelConfig, device=None, dtype=None) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps, device=device, dtype=dtype, impl=config.norm_impl)
    if config.norm == "layernorm":
        return LayerNorm(config.d_model, config.norm_eps, device=device, dtype=dtype, impl=config.norm_impl)
    return nn.Identity()


class TransformerLM(nn.Module):
    """token ids -> logits. Build from a config or from the course's keyword arguments::

    model = TransformerLM(ModelConfig(vocab_size=10_000, d_model=512, ...))
    model = TransformerLM(vocab_size=10_000, context_length=256, d_model=512, num_layers=4,
                          num_heads=16, d_ff=1344, rope_theta=10_000.0)
    """

    def __init__(self, config: ModelConfig | None = None, /, *, device=None, dtype=None, **kwargs):
        super().__init__()
        if config is None:
            config = ModelConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a ModelConfig or keyword arguments, not both")
        self.config = config
        self.token_embeddings = Embedding(config.vocab_size, config.d_model, device=device, dtype=dtype)
        self.position_embeddings = None
        if config.positions == "learned":
            self.position_embeddings = Embedding(
                config.context_length, config.d_model, device=device, dtype=dtype
            )
        self.layers = nn.ModuleList(
            TransformerBlock(config, device=device, dtype=dtype) for _ in range(config.num_layers)
        )
        # Post-norm blocks already end in a norm, so a final norm would be redundant.
        self.ln_final = (
            make_norm(config, device=device, dtype=dtype) if config.norm_position == "pre" else nn.Identity()
        )
        self.lm_head = Linear(config.d_model, config.vocab_size, device=device, dtype=dtype)
        if config.tie_embeddings:
            self.lm_head.weight = self.token_embeddings.weight
        self.dropout = nn.Dropout(config.dropout)

    @classmethod
    def from_config(cls, config: ModelConfig, device=None, dtype=None) -> TransformerLM:
        return cls(config, device=device, dtype=dtype)

    def forward(
        self,
        token_ids: Int[Tensor, "batch seq"],
        token_positions: Int[Tensor, "batch seq"] | None = None,
        kv_cache: KVCache | None = None,
    ) -> Float[Tensor, "batch seq vocab"]:
        seq = token_ids.shape[-1]
        offset = kv_cache.length if kv_cache is not None else 0
        if offset + seq > self.config.context_length:
            raise ValueError(
                f"sequence of {offset + seq} tokens exceeds context_length {self.config.context_length}"
            )
        x = self.token_embeddings(token_ids)  # (batch, seq, d_model)
        # Learned absolute positions (the ablation) are added here; RoPE acts inside attention instead.
        if self.position_embeddings is not None:
            if token_positions is None:
                token_positions = torch.arange(offset, offset + seq, device=token_ids.device)
            x = x + self.position_embeddings(token_positions)
        x = self.dropout(x)
        # The residual stream: (batch, seq, d_model) through every block.
        for i, layer in enumerate(self.layers):
            x = layer(x, token_positions, kv_cache, i)  # layer i reads and writes slot i of the cache
        if kv_cache is not None:
            kv_cache.length += seq  # every layer has stored this step's keys: move the shared cursor
        # Unnormalised scores over the vocabulary; the loss (or the sampler) applies the softmax.
        return self.lm_head(self.ln_final(x))  # (batch, seq, vocab)

    def new_kv_cache(self, max_seq_len: int | None = None) -> KVCache:
        return KVCache(self.config.num_layers, max_seq_len or self.config.context_length)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Count of the actual parameters (tied weights once); see ModelConfig.num_parameters."""
        params = {id(p): p for p in self.parameters()}
        if non_embedding:
            for module in (self.token_embeddings, self.position_embeddings, self.lm_head):
                if module is not None:
                    params.pop(id(module.weight), None)
        return sum(p.numel() for p in params.values())
