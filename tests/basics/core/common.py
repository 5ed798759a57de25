"""Plain references and inputs for the assignment-1 core graders (they never import the implementation).

- Model references from torch built-ins: RoPE as complex multiplication, causal multi-head attention
  one head at a time, the pre-norm Transformer block and LM of the handout (2025: RoPE, SwiGLU) and
  of the 2024 release (learned positions, GELU FFN without ``w3``).
- ``course_weights``: random weights under the course's state-dict names, scaled so activations stay
  O(1) -- the graders pass these in through ``run_transformer_block`` / ``run_transformer_lm``.
- Tokenizer peers: a tiktoken ``Encoding`` and a Hugging Face ``tokenizers`` BPE built from the
  vocabulary and merges handed to the student's tokenizer (any id layout whose ranks follow the
  merge order), and the stored fixtures (training text, text to encode, expected merges).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

ENDOFTEXT = "<|endoftext|>"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def release(adapters, new: str, old: str) -> str:
    """The adapter name this implementation provides: the current course name, else the 2024 one."""
    return old if not adapters.provides(new) and adapters.provides(old) else new


# ------------------------------------------------------------------------------------------ model


def rope_reference(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Pair (x[2k], x[2k+1]) is the complex number x[2k] + i x[2k+1], rotated by pos * theta^(-2k/d)."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = positions.to(torch.float64)[..., None] * freqs  # (..., seq, d/2)
    z = torch.complex(x[..., 0::2].double(), x[..., 1::2].double()) * torch.polar(
        torch.ones_like(angles), angles
    )
    return torch.stack((z.real, z.imag), dim=-1).flatten(-2).to(x.dtype)


def mha_reference(x, wq, wk, wv, wo, num_heads, theta=None, positions=None):
    """Causal multi-head self-attention, one head at a time (rows h*d_head.. of each projection)."""
    seq, d_model = x.shape[-2], x.shape[-1]
    d_head = d_model // num_heads
    outs = []
    for h in range(num_heads):
        rows = slice(h * d_head, (h + 1) * d_head)
        q, k, v = x @ wq[rows].T, x @ wk[rows].T, x @ wv[rows].T
        if theta is not None:
            pos = positions if positions is not None else torch.arange(seq)
            q, k = rope_reference(q, pos, theta), rope_reference(k, pos, theta)
        outs.append(F.scaled_dot_product_attention(q, k, v, is_causal=True))
    return torch.cat(outs, dim=-1) @ wo.T


def rms_norm(x, weight, eps=1e-5):
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def block_reference(x, w, num_heads, theta, prefix="", positions=None, year=2025):
    """Pre-norm block: x + MHA(RMSNorm(x)), then + FFN(RMSNorm(.)). 2024: no RoPE, GELU FFN."""
    p = lambda name: w[prefix + name]
    h = rms_norm(x, p("ln1.weight"))
    attn = (p(f"attn.{n}_proj.weight") for n in ("q", "k", "v", "output"))
    z = x + mha_reference(h, *attn, num_heads, theta=theta if year == 2025 else None, positions=positions)
    h = rms_norm(z, p("ln2.weight"))
    if year == 2025:
        return z + (F.silu(h @ p("ffn.w1.weight").T) * (h @ p("ffn.w3.weight").T)) @ p("ffn.w2.weight").T
    return z + F.gelu(h @ p("ffn.w1.weight").T) @ p("ffn.w2.weight").T


def lm_reference(ids, w, num_layers, num_heads, theta, year=2025):
    x = w["token_embeddings.weight"][ids]
    if year == 2024:
        x = x + w["position_embeddings.weight"][: ids.shape[-1]]
    for i in range(num_layers):
        x = block_reference(x, w, num_heads, theta, prefix=f"layers.{i}.", year=year)
    return rms_norm(x, w["ln_final.weight"]) @ w["lm_head.weight"].T


def block_weights(d_model, d_ff, generator, prefix="", year=2025) -> dict[str, torch.Tensor]:
    def matrix(rows, cols):
        return torch.randn(rows, cols, generator=generator) / math.sqrt(cols)

    w = {prefix + f"attn.{n}_proj.weight": matrix(d_model, d_model) for n in ("q", "k", "v", "output")}
    w[prefix + "ffn.w1.weight"] = matrix(d_ff, d_model)
    w[prefix + "ffn.w2.weight"] = matrix(d_model, d_ff)
    if year == 2025:
        w[prefix + "ffn.w3.weight"] = matrix(d_ff, d_model)
    for norm in ("ln1", "ln2"):
        w[prefix + f"{norm}.weight"] = 1 + 0.2 * torch.randn(d_model, generator=generator)
    return w


def lm_weights(vocab_size, context_length, d_model, num_layers, d_ff, seed=0, year=2025):
    """Random weights under the course's state-dict names."""
    g = seeded(seed)
    w = {"token_embeddings.weight": torch.randn(vocab_size, d_model, generator=g)}
    if year == 2024:
        w["position_embeddings.weight"] = 0.5 * torch.randn(context_length, d_model, generator=g)
    for i in range(num_layers):
        w |= block_weights(d_model, d_ff, g, prefix=f"layers.{i}.", year=year)
    w["ln_final.weight"] = 1 + 0.2 * torch.randn(d_model, generator=g)
    w["lm_head.weight"] = torch.randn(vocab_size, d_model, generator=g) / math.sqrt(d_model)
    return w


# ------------------------------------------------------------------------------------------ tokenizer


def expected_bpe() -> tuple[list[tuple[bytes, bytes]], set[bytes], int]:
    """(merges in order, vocabulary values, vocab_size) for fixtures/bpe_train.txt."""
    data = json.loads((FIXTURES / "bpe_expected.json").read_text(encoding="utf-8"))
    merges = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in data["merges"]]
    return merges, {bytes.fromhex(t) for t in data["vocab_values"]}, data["vocab_size"]


def read_fixture(name: str) -> str:
    with open(FIXTURES / name, encoding="utf-8", newline="") as f:
        return f.read()


def shuffled_layout(merges, special_tokens) -> dict[int, bytes]:
    """A vocabulary in an id layout other than ours: the special tokens first, then the 256 bytes,
    then one token per merge (ranks still follow the merge order, as tiktoken needs)."""
    tokens = [t.encode() for t in special_tokens] + [bytes([i]) for i in range(256)]
    tokens += [a + b for a, b in merges]
    return dict(enumerate(tokens))


def tiktoken_peer(vocab: dict[int, bytes], special_tokens: list[str]):
    import tiktoken

    specials = {t.encode() for t in special_tokens}
    return tiktoken.Encoding(
        name="graded",
        pat_str=GPT2_PATTERN,
        mergeable_ranks={token: i for i, token in vocab.items() if token not in specials},
        special_tokens={t: i for i, token in vocab.items() for t in special_tokens if token == t.encode()},
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table of printable characters standing for bytes (the format HF BPE files use)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def hf_peer(vocab: dict[int, bytes], merges, special_tokens: list[str]):
    """A Hugging Face byte-level BPE tokenizer with this vocabulary and merges."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    table = bytes_to_unicode()
    text = lambda token: "".join(table[b] for b in token)
    specials = {t.encode() for t in special_tokens}
    model = models.BPE(
        vocab={token.decode() if token in specials else text(token): i for i, token in vocab.items()},
        merges=[(text(a), text(b)) for a, b in merges],
    )
    hf = Tokenizer(model)
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    ids = {token: i for i, token in vocab.items()}
    hf.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in special_tokens])
    for t in special_tokens:
        assert hf.token_to_id(t) == ids[t.encode()], "the special token must keep its id"
    return hf
