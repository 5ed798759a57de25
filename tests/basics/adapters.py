"""Adapters for the basics graders: the only door from tests/basics to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/basics --adapters basics=student_pkg.adapters`.
"""

from __future__ import annotations


# ---- tokenizer ----
def run_train_bpe(input_path, vocab_size, special_tokens, **kwargs):
    """(vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]]). ``kwargs``: num_processes.
    Our ids: 0..255 the bytes, then one per merge in order, then the special tokens."""
    from basics.tokenizer import train_bpe

    return train_bpe(input_path, vocab_size, special_tokens, **kwargs)


def run_train_bpe_reference(input_path, vocab_size, special_tokens):
    """The implementation's own plain BPE trainer (extension: the readable version beside the fast one)."""
    from basics.bpe import train_bpe_reference

    return train_bpe_reference(input_path, vocab_size, special_tokens)


def get_tokenizer(vocab, merges, special_tokens=None):
    """An object with encode(str) -> list[int], encode_iterable(iterable) -> iterator of ids,
    decode(ids) -> str."""
    from basics.tokenizer import Tokenizer

    return Tokenizer(vocab, merges, special_tokens)


def get_tokenizer_from_files(vocab_path, merges_path, special_tokens=None):
    """A tokenizer loaded from GPT-2-format vocab.json and merges.txt."""
    from basics.tokenizer import Tokenizer

    return Tokenizer.from_files(vocab_path, merges_path, special_tokens)


def save_tokenizer(tokenizer, directory):
    """Write GPT-2-format files into ``directory``; return (vocab.json path, merges.txt path)."""
    return tokenizer.save(directory)


def tokenizer_to_tiktoken(tokenizer):
    """A tiktoken.Encoding with the tokenizer's vocabulary (ids as ranks) and special tokens."""
    return tokenizer.to_tiktoken()


def run_encode_file(tokenizer, path, num_processes):
    """Ids of the whole UTF-8 file ``path`` (a 1-D integer array or list)."""
    return tokenizer.encode_file(path, num_processes=num_processes)


def run_load_or_train_default_tokenizer(out_dir, vocab_size, corpus_path, special_tokens):
    """Train on the text file ``corpus_path`` and save in ``out_dir``, or reuse what is saved."""
    from basics.tokenizer import load_or_train_default_tokenizer

    return load_or_train_default_tokenizer(out_dir, vocab_size, corpus_path, special_tokens)


# (end of section: tokenizer)


# ---- model ----
def get_model_config(**kwargs):
    """A validated model config (raises ValueError on bad values)."""
    from basics.model import ModelConfig

    return ModelConfig(**kwargs)


def get_transformer_lm(config):
    """A freshly initialised TransformerLM for ``config`` (from get_model_config)."""
    from basics.model import TransformerLM

    return TransformerLM(config)


def run_linear(d_in, d_out, weights, in_features):
    from basics.model import Linear

    layer = Linear(d_in, d_out, dtype=weights.dtype)
    layer.load_state_dict({"weight": weights})
    return layer(in_features)


def new_linear(d_in, d_out):
    from basics.model import Linear

    return Linear(d_in, d_out)


def run_embedding(vocab_size, d_model, weights, token_ids):
    from basics.model import Embedding

    layer = Embedding(vocab_size, d_model, dtype=weights.dtype)
    layer.load_state_dict({"weight": weights})
    return layer(token_ids)


def new_embedding(vocab_size, d_model):
    from basics.model import Embedding

    return Embedding(vocab_size, d_model)


def run_rmsnorm(d_model, eps, weights, in_features):
    from basics.model import RMSNorm

    layer = RMSNorm(d_model, eps, dtype=weights.dtype)
    layer.load_state_dict({"weight": weights})
    return layer(in_features)


def run_silu(in_features):
    from basics.model import silu

    return silu(in_features)


def run_swiglu(d_model, d_ff, w1_weight, w2_weight, w3_weight, in_features):
    from basics.model import SwiGLU

    layer = SwiGLU(d_model, d_ff)
    layer.load_state_dict({"w1.weight": w1_weight, "w2.weight": w2_weight, "w3.weight": w3_weight})
    return layer(in_features)


def run_rope(d_k, theta, max_seq_len, in_query_or_key, token_positions, impl="reference"):
    """RoPE; ``impl`` names another implementation of the same rotation (ours: "complex")."""
    from basics.model import RotaryPositionalEmbedding

    return RotaryPositionalEmbedding(theta, d_k, max_seq_len, impl=impl)(in_query_or_key, token_positions)


def run_softmax(in_features, dim):
    from basics.model import softmax

    return softmax(in_features, dim)


def run_scaled_dot_product_attention(Q, K, V, mask=None):
    from basics.model import scaled_dot_product_attention

    return scaled_dot_product_attention(Q, K, V, mask)


def run_multihead_self_attention(
    d_model,
    num_heads,
    q_proj_weight,
    k_proj_weight,
    v_proj_weight,
    o_proj_weight,
    in_features,
    max_seq_len=None,
    theta=None,
    token_positions=None,
    num_kv_heads=None,
):
    """Causal MHA; RoPE when ``theta`` is given. Weights use the course's (out, in) layout."""
    from basics.model import MultiHeadSelfAttention

    layer = MultiHeadSelfAttention(
        d_model, num_heads, max_seq_len=max_seq_len, theta=theta, num_kv_heads=num_kv_heads
    )
    layer.load_state_dict(
        {
            "q_proj.weight": q_proj_weight,
            "k_proj.weight": k_proj_weight,
            "v_proj.weight": v_proj_weight,
            "output_proj.weight": o_proj_weight,
        }
    )
    return layer(in_features, token_positions)


def run_multihead_self_attention_with_rope(
    d_model,
    num_heads,
    max_seq_len,
    theta,
    q_proj_weight,
    k_proj_weight,
    v_proj_weight,
    o_proj_weight,
    in_features,
    token_positions=None,
):
    """Causal MHA with RoPE at ``token_positions`` (default 0..seq-1)."""
    return run_multihead_self_attention(
        d_model,
        num_heads,
        q_proj_weight,
        k_proj_weight,
        v_proj_weight,
        o_proj_weight,
        in_features,
        max_seq_len=max_seq_len,
        theta=theta,
        token_positions=token_positions,
    )


def run_transformer_block(d_model, num_heads, d_ff, max_seq_len, theta, weights, in_features):
    from basics.model import ModelConfig, TransformerBlock

    config = ModelConfig(
        d_model=d_model, num_heads=num_heads, d_ff=d_ff, context_length=max_seq_len, rope_theta=theta
    )
    block = TransformerBlock(config)
    block.load_state_dict(weights)
    return block(in_features)


def run_transformer_lm(
    vocab_size, context_length, d_model, num_layers, num_heads, d_ff, rope_theta, weights, in_indices
):
    from basics.model import TransformerLM

    model = TransformerLM(
        vocab_size=vocab_size,
        context_length=context_length,
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        d_ff=d_ff,
        rope_theta=rope_theta,
    )
    model.load_state_dict(weights)
    return model(in_indices)


def run_transformer_lm_with_cache(model, token_ids, split_points):
    """Logits of ``token_ids`` computed chunk by chunk through the model's KV cache."""
    import torch

    cache = model.new_kv_cache()
    pieces, start = [], 0
    for end in [*split_points, token_ids.shape[-1]]:
        pieces.append(model(token_ids[:, start:end], kv_cache=cache))
        start = end
    return torch.cat(pieces, dim=1)


# (end of section: model)


# ---- training pieces: nn_utils, optim, data, checkpoint ----
def run_cross_entropy(inputs, targets):
    """Mean cross-entropy of integer ``targets`` under ``inputs`` logits (..., vocab)."""
    from basics.nn_utils import cross_entropy

    return cross_entropy(inputs, targets)


def run_gradient_clipping(parameters, max_l2_norm):
    """Clip the gradients of ``parameters`` in place to global L2 norm ``max_l2_norm``."""
    from basics.nn_utils import clip_gradients

    return clip_gradients(parameters, max_l2_norm)


def get_adamw_cls():
    """The AdamW optimizer class (a torch.optim.Optimizer subclass)."""
    from basics.optim import AdamW

    return AdamW


def make_adamw(params, foreach, **hyperparameters):
    """AdamW over ``params``; ``foreach=True`` selects the multi-tensor implementation of the same step
    (extension: the fast path beside the readable one)."""
    from basics.optim import AdamW

    return AdamW(params, foreach=foreach, **hyperparameters)


def run_get_lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters):
    from basics.optim import lr_cosine_schedule

    return lr_cosine_schedule(it, max_learning_rate, min_learning_rate, warmup_iters, cosine_cycle_iters)


def run_get_lr_wsd_schedule(
    it, max_learning_rate, min_learning_rate, warmup_iters, stable_iters, decay_iters, decay_shape="linear"
):
    """Warmup-stable-decay; ``decay_shape`` is "linear" or "cosine"."""
    from basics.optim import lr_wsd_schedule

    return lr_wsd_schedule(
        it,
        max_learning_rate,
        min_learning_rate,
        warmup_iters,
        stable_iters,
        decay_iters,
        decay_shape=decay_shape,
    )


def run_get_batch(dataset, batch_size, context_length, device, generator=None):
    """(x, y) int64 on ``device``; ``generator`` is an optional torch.Generator for the start positions."""
    from basics.data import get_batch

    return get_batch(dataset, batch_size, context_length, device, generator=generator)


def run_tokenize_to_array(text_paths, tokenizer, out_path, num_processes=None, chunk_bytes=None):
    """Tokenize text files into a flat .npy at ``out_path``; returns the array (memory-mapped)."""
    from basics.data import DEFAULT_CHUNK_BYTES, tokenize_to_array

    return tokenize_to_array(
        text_paths,
        tokenizer,
        out_path,
        num_processes=num_processes,
        chunk_bytes=chunk_bytes or DEFAULT_CHUNK_BYTES,
    )


def run_load_tokens(path):
    from basics.data import load_tokens

    return load_tokens(path)


def atomic_write(path, mode="wb", **open_kwargs):
    """A context manager like ``open(path, mode)`` whose file replaces ``path`` only if the block
    finishes without an error (extension: the one atomic-write helper)."""
    from basics.files import atomic_write

    return atomic_write(path, mode, **open_kwargs)


def run_save_checkpoint(model, optimizer, iteration, out, config=None):
    from basics.checkpoint import save_checkpoint

    return save_checkpoint(model, optimizer, iteration, out, config=config)


def run_load_checkpoint(src, model, optimizer=None, restore_rng=False):
    """Load model/optimizer state from ``src``; return the iteration. ``restore_rng`` also restores RNGs."""
    from basics.checkpoint import load_checkpoint

    return load_checkpoint(src, model, optimizer, restore_rng=restore_rng)


def run_read_checkpoint_config(src):
    from basics.checkpoint import read_checkpoint_config

    return read_checkpoint_config(src)


def run_latest_checkpoint(directory):
    """Path of the newest checkpoint in ``directory`` saved under the conventional name, or None."""
    from basics.checkpoint import latest_checkpoint

    return latest_checkpoint(directory)


def checkpoint_path(directory, iteration):
    """The conventional file name for the checkpoint at ``iteration`` in ``directory``."""
    from basics.checkpoint import checkpoint_path

    return checkpoint_path(directory, iteration)


# (end of section: training pieces: nn_utils, optim, data, checkpoint)


# ---- training job, generation, export ----
def make_train_config(model_config, **kwargs):
    """A validated TrainConfig for ``model_config`` (raises ValueError on bad values)."""
    from basics.train import TrainConfig

    return TrainConfig(model=model_config, **kwargs)


def run_train(config):
    """Train; returns an object with .steps, .train_loss, .val_loss, .checkpoint, .metrics_path."""
    from basics.train import train

    return train(config)


def training_diverged_error():
    """The exception class train() raises on a NaN/inf loss."""
    from basics.train import TrainingDiverged

    return TrainingDiverged


def run_train_job(config, callback=None, strategy=None):
    """Like run_train, with ``callback(record)`` for every log record (warnings arrive as records with a
    "warning" key) and a parallelism ``strategy`` (an instance of training_strategy_class())."""
    from basics.train import train

    return train(config, callback=callback, strategy=strategy)


def training_strategy_class():
    """The single-process strategy (basics.strategy.Strategy) that graders subclass to inject faults."""
    from basics.strategy import Strategy

    return Strategy


def make_sample_config(**kwargs):
    """A validated SampleConfig (the flags of scripts/generate.py; raises ValueError on bad values)."""
    from basics.generate import SampleConfig

    return SampleConfig(**kwargs)


def run_resolve_text_corpus(files, cache_dir):
    """Local text files as a (cached) corpus: an object with .train, .validation and .notes."""
    from basics.prepare import resolve_corpus

    return resolve_corpus(list(files), None, cache_dir)


def load_trained_model(checkpoint, model_config):
    """Rebuild a model from a checkpoint written by run_train."""
    from basics.checkpoint import load_checkpoint
    from basics.model import TransformerLM

    model = TransformerLM(model_config)
    load_checkpoint(checkpoint, model)
    return model


# -- generation and export --
def run_generate(
    model,
    prompt_ids,
    max_new_tokens,
    temperature=1.0,
    top_p=1.0,
    eos_token_id=None,
    use_cache=True,
    generator=None,
):
    """New token ids (batch, new) after equal-length prompts (batch, prompt), or after one list[int] prompt."""
    from basics.generate import generate

    return generate(
        model,
        prompt_ids,
        max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        eos_token_id=eos_token_id,
        use_cache=use_cache,
        generator=generator,
    )


def run_sample_next_token(logits, temperature, top_p, generator=None):
    """One token id per row of ``logits`` (batch, vocab): temperature (0 = argmax) then top-p."""
    from basics.generate import sample_next_token

    return sample_next_token(logits, temperature, top_p, generator)


def run_generate_text(model, tokenizer, prompt, max_new_tokens, temperature=1.0, top_p=1.0, generator=None):
    """The decoded continuation of ``prompt`` (without the prompt), stopping before <|endoftext|>."""
    from basics.generate import generate_text

    return generate_text(
        model, tokenizer, prompt, max_new_tokens, temperature=temperature, top_p=top_p, generator=generator
    )


def run_export_to_hf_llama(model, tokenizer, out_dir):
    """Write safetensors + config.json (+ tokenizer files) that transformers.LlamaForCausalLM loads."""
    from basics.export import export_to_hf_llama

    return export_to_hf_llama(model, tokenizer, out_dir)


def run_load_trained_model(run, device="cpu"):
    """(model in eval mode, stored config dict, checkpoint path) from a run directory or checkpoint file."""
    from basics.generate import load_trained_model

    return load_trained_model(run, device)


# (end of section: training job, generation, export)
