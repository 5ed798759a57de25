"""Export a TransformerLM to the Hugging Face Llama format (safetensors + config.json + tokenizer files).

The course's default architecture (pre-norm RMSNorm, SwiGLU, RoPE, no biases) is exactly Llama's, so
``transformers.LlamaForCausalLM.from_pretrained(out_dir)`` runs our weights and gives the same logits.
Two things differ and are converted here:

1. Names: ``layers.{i}.attn.q_proj.weight`` -> ``model.layers.{i}.self_attn.q_proj.weight``,
   ``ffn.w1/w3/w2`` -> ``mlp.gate_proj/up_proj/down_proj``, ``ln1/ln2`` -> ``input_layernorm`` /
   ``post_attention_layernorm``, ``token_embeddings`` -> ``model.embed_tokens``, ``ln_final`` ->
   ``model.norm``. Both store a linear map as (out, in), so no transposes.
2. RoPE layout: we rotate interleaved pairs (x[2k], x[2k+1]) of each head by angle pos * theta^(-2k/d);
   HF's ``rotate_half`` rotates the halves (x[k], x[k + d/2]) by the same angle. Reordering each head's
   rows of q_proj and k_proj as [0, 2, 4, ..., d-2, 1, 3, ..., d-1] moves our pair k to HF's pair k.
   The attention scores q . k are sums over the head dimension, so permuting q and k alike leaves
   them unchanged; v and the output projection keep their order.

Only that default architecture is exportable; any ablation switch (LayerNorm, post-norm, SiLU/GELU
feed-forward, learned or no positions) raises ValueError. Grouped-query attention and tied
embeddings map to Llama's ``num_key_value_heads`` and ``tie_word_embeddings``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from basics.pretokenization import ENDOFTEXT

__all__ = ["export_to_hf_llama", "hf_llama_config", "hf_llama_state_dict", "interleaved_to_halves"]


def interleaved_to_halves(
    weight: Float[Tensor, "heads_x_d_head d_model"], num_heads: int
) -> Float[Tensor, "heads_x_d_head d_model"]:
    """Reorder each head's rows from interleaved RoPE pairs to HF's half-split layout.

    For one head with d_head = 4, rows [r0, r1, r2, r3] (pairs (r0, r1), (r2, r3)) become
    [r0, r2, r1, r3] (pairs (r0, r1) and (r2, r3) now sit at (k, k + 2)).
    """
    rows, d_model = weight.shape
    d_head = rows // num_heads
    per_head = weight.reshape(num_heads, d_head // 2, 2, d_model)  # (heads, pair k, member, d_model)
    return per_head.transpose(1, 2).reshape(rows, d_model)  # (heads, member, pair k, ...) -> halves


def _check_exportable(config: Any) -> None:
    wanted = {"norm": "rmsnorm", "norm_position": "pre", "ffn": "swiglu", "positions": "rope"}
    wrong = [f"{k}={getattr(config, k)!r} (need {v!r})" for k, v in wanted.items() if getattr(config, k) != v]
    if wrong:
        raise ValueError(
            "only the default Llama-style architecture can be exported to HF Llama; got " + ", ".join(wrong)
        )


def hf_llama_config(config: Any, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The ``config.json`` contents of ``transformers.LlamaConfig`` for our ``ModelConfig``."""
    _check_exportable(config)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.ffn_dim,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.d_head,
        "max_position_embeddings": config.context_length,
        "rope_theta": float(config.rope_theta),
        "rms_norm_eps": float(config.norm_eps),
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": bool(config.tie_embeddings),
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def hf_llama_state_dict(model: torch.nn.Module) -> dict[str, Tensor]:
    """Our state dict under HF Llama's names, with q/k rows permuted for HF's RoPE layout."""
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    config = model.config
    _check_exportable(config)
    ours = model.state_dict()
    out = {
        "model.embed_tokens.weight": ours["token_embeddings.weight"],
        "model.norm.weight": ours["ln_final.weight"],
    }
    if not config.tie_embeddings:
        out["lm_head.weight"] = ours["lm_head.weight"]
    for i in range(config.num_layers):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        out[dst + "self_attn.q_proj.weight"] = interleaved_to_halves(
            ours[src + "attn.q_proj.weight"], config.num_heads
        )
        out[dst + "self_attn.k_proj.weight"] = interleaved_to_halves(
            ours[src + "attn.k_proj.weight"], config.kv_heads
        )
        out[dst + "self_attn.v_proj.weight"] = ours[src + "attn.v_proj.weight"]
        out[dst + "self_attn.o_proj.weight"] = ours[src + "attn.output_proj.weight"]
        out[dst + "mlp.gate_proj.weight"] = ours[src + "ffn.w1.weight"]
        out[dst + "mlp.up_proj.weight"] = ours[src + "ffn.w3.weight"]
        out[dst + "mlp.down_proj.weight"] = ours[src + "ffn.w2.weight"]
        out[dst + "input_layernorm.weight"] = ours[src + "ln1.weight"]
        out[dst + "post_attention_layernorm.weight"] = ours[src + "ln2.weight"]
    # safetensors wants contiguous tensors that share no storage.
    return {name: t.detach().cpu().contiguous().clone() for name, t in out.items()}


def _write_tokenizer(tokenizer: Any, out_dir: Path, context_length: int, eos: str) -> None:
    """GPT-2-format vocab.json/merges.txt plus the config that makes AutoTokenizer load them."""
    tokenizer.save(out_dir)
    specials = list(getattr(tokenizer, "special_tokens", []) or [])
    eos_token = eos if eos in specials else None
    tokenizer_config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": context_length,
        "add_prefix_space": False,
        "bos_token": eos_token,
        "eos_token": eos_token,
        "unk_token": eos_token,
        "additional_special_tokens": [t for t in specials if t != eos_token],
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    special_map = {k: v for k, v in tokenizer_config.items() if k.endswith("_token") and v is not None}
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))


def export_to_hf_llama(
    model: torch.nn.Module,
    tokenizer: Any | None,
    out_dir: str | os.PathLike,
    *,
    dtype: torch.dtype | None = None,
    eos: str = ENDOFTEXT,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` (and tokenizer files, when given) to ``out_dir``.

    ``dtype`` defaults to the model's parameter dtype. Returns ``out_dir``. Afterwards::

        transformers.LlamaForCausalLM.from_pretrained(out_dir)   # same logits as ``model``
        transformers.AutoTokenizer.from_pretrained(out_dir)      # same ids as ``tokenizer``
    """
    from safetensors.torch import save_file

    inner = getattr(model, "_orig_mod", model)
    config = inner.config
    _check_exportable(config)
    dtype = dtype or next(inner.parameters()).dtype
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.to(dtype) for name, t in hf_llama_state_dict(inner).items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_llama_config(config, dtype), indent=2))
    if tokenizer is not None:
        _write_tokenizer(tokenizer, out_dir, config.context_length, eos)
    return out_dir
