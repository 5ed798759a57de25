"""Unit 2 -- systems: a Triton fused RMSNorm, FlashAttention-2, data-parallel training and
optimizer-state sharding, with benchmarks against torch's own kernels."""
