"""Graders for the Hugging Face Llama export: transformers loads the files and gives the same logits."""

from __future__ import annotations

import json

import pytest
import torch
import transformers  # a peer the graders need (the `test` extra installs it): a missing one fails, not skips

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def _model(adapters, seed=0, **overrides):
    kwargs = dict(vocab_size=300, context_length=24, d_model=64, num_layers=2, num_heads=4, rope_theta=500.0)
    kwargs.update(overrides)
    torch.manual_seed(seed)
    model = adapters.get_transformer_lm(adapters.get_model_config(**kwargs))
    with torch.no_grad():  # non-trivial norm gains, so a mixed-up norm weight would show
        for p in model.parameters():
            if p.dim() == 1:
                p.mul_(1 + 0.3 * torch.randn_like(p))
    return model.eval()


def _tokenizer(adapters):
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"th", 257: b"the", 258: b" t", 259: b"in"}
    merges = [(b"t", b"h"), (b"th", b"e"), (b" ", b"t"), (b"i", b"n")]
    return adapters.get_tokenizer(vocab, merges, ["<|endoftext|>"])


@pytest.mark.parametrize(
    "overrides",
    [{}, {"num_kv_heads": 2}, {"tie_embeddings": True}, {"d_ff": 96, "rope_theta": 10_000.0}],
    ids=["default", "gqa", "tied", "d_ff"],
)
def test_transformers_gives_the_same_logits(adapters, tmp_path, overrides):
    model = _model(adapters, **overrides)
    adapters.run_export_to_hf_llama(model, None, tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    assert hf.config.model_type == "llama"
    tokens = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf(tokens).logits
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)
    # Same greedy continuation through transformers' own generate.
    prompt = tokens[:1, :6]
    with torch.no_grad():
        hf_new = hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False
        )[:, 6:]
    assert torch.equal(hf_new, adapters.run_generate(model, prompt, 8, temperature=0.0))


def test_rope_permutation_is_needed(adapters, tmp_path):
    """Copying q/k rows unpermuted would not match: the test above really checks the RoPE layout."""
    from safetensors.torch import load_file, save_file

    model = _model(adapters, seed=3)
    adapters.run_export_to_hf_llama(model, None, tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    sd = model.state_dict()
    tensors["model.layers.0.self_attn.q_proj.weight"] = sd["layers.0.attn.q_proj.weight"].clone()
    tensors["model.layers.0.self_attn.k_proj.weight"] = sd["layers.0.attn.k_proj.weight"].clone()
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path).eval()
    tokens = torch.randint(0, 300, (1, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (hf(tokens).logits - model(tokens)).abs().max() > 1e-3


def test_tokenizer_files_load_in_transformers(adapters, tmp_path):
    model = _model(adapters)
    tokenizer = _tokenizer(adapters)
    adapters.run_export_to_hf_llama(model, tokenizer, tmp_path)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in ["the thin tin", "in the<|endoftext|>then", "caf\u00e9 \u65e5\u672c \n\n  x", ""]:
        assert hf_tokenizer.encode(text) == tokenizer.encode(text)
    assert hf_tokenizer.eos_token == "<|endoftext|>"
    assert hf_tokenizer.eos_token_id == tokenizer.encode("<|endoftext|>")[0]


def test_config_json_describes_the_model(adapters, tmp_path):
    model = _model(adapters, num_kv_heads=2)
    adapters.run_export_to_hf_llama(model, None, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["hidden_size"] == 64 and config["num_hidden_layers"] == 2
    assert config["num_attention_heads"] == 4 and config["num_key_value_heads"] == 2
    assert config["vocab_size"] == 300 and config["max_position_embeddings"] == 24
    assert config["rope_theta"] == 500.0


@pytest.mark.parametrize(
    "overrides",
    [{"norm": "layernorm"}, {"norm_position": "post"}, {"ffn": "gelu"}, {"positions": "learned"}],
)
def test_ablations_cannot_be_exported(adapters, tmp_path, overrides):
    model = _model(adapters, **overrides)
    with pytest.raises(ValueError):
        adapters.run_export_to_hf_llama(model, None, tmp_path)
