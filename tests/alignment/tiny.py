"""Test-only helpers for the alignment graders: a character tokenizer, an offline Hugging Face tokenizer
with the same ids, a tiny randomly initialised Hugging Face causal LM, and plain references.

Nothing here touches the implementation under test; nothing is downloaded.
"""

from __future__ import annotations

import torch

EOS = "<|endoftext|>"
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 +=,.:<>/\n?!#ABCDEFGHIJKLMNOPQRSTUVWXYZ()'\"-*\\{}$^_"


class CharTokenizer:
    """One id per character of ALPHABET; ``<|endoftext|>`` is the last id. Mirrors our Tokenizer's API."""

    def __init__(self, alphabet: str = ALPHABET):
        self.alphabet = alphabet
        self.index = {c: i for i, c in enumerate(alphabet)}
        self.eos_id = len(alphabet)
        self.vocab_size = len(alphabet) + 1

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for k, part in enumerate(text.split(EOS)):
            if k:
                ids.append(self.eos_id)
            ids.extend(self.index[c] for c in part)
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(EOS if i == self.eos_id else self.alphabet[i] for i in ids)


def hf_char_tokenizer(alphabet: str = ALPHABET):
    """A ``PreTrainedTokenizerFast`` with the same ids as ``CharTokenizer`` (BPE with no merges)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab[EOS] = len(alphabet)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.add_special_tokens([EOS])
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)


def tiny_hf_model(vocab_size: int, seed: int = 0):
    """A 2-layer Llama with random weights (built from a config, no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config).eval()


class BigramLM(torch.nn.Module):
    """A callable model (ids -> logits) with a learnable bigram table: the smallest 'model' there is."""

    def __init__(self, vocab_size: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(vocab_size, vocab_size, generator=generator))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table[ids]


def reference_token_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) via torch's cross entropy (a peer of the implementation's log-softmax + gather)."""
    return -torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
    ).view(labels.shape)
