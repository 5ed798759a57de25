"""Unit 2 -- systems: a Triton fused RMSNorm, FlashAttention-2, data-parallel training and
optimizer-state sharding, with benchmarks against torch's own kernels.

Importing the package registers its kernels with the unit-1 model, so that
``ModelConfig(norm_impl="triton", attention_impl="flash_triton")`` (and the ``pytorch_autograd`` /
``flash_pytorch`` choices) build models that run them; ``basics`` itself never imports ``systems``.
"""

from basics.model import register_kernel
from systems.flash_attention import FlashAttentionPyTorch, FlashAttentionTriton
from systems.rmsnorm import RMSNormAutogradPyTorch, RMSNormAutogradTriton

register_kernel("norm_impl", "pytorch_autograd", RMSNormAutogradPyTorch)
register_kernel("norm_impl", "triton", RMSNormAutogradTriton)
register_kernel("attention_impl", "flash_pytorch", FlashAttentionPyTorch)
register_kernel("attention_impl", "flash_triton", FlashAttentionTriton)
