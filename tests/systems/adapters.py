"""Adapters for the systems graders: the only door from tests/systems to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/systems --adapters systems=student_pkg.adapters`.
"""

from __future__ import annotations


# ---- rmsnorm and flash attention kernels (issue 4) ----
def get_rmsnorm_autograd_function_pytorch() -> type:
    """The RMSNorm torch.autograd.Function with a hand-written PyTorch backward: ``.apply(x, g)``."""
    from systems.rmsnorm import RMSNormAutogradPyTorch

    return RMSNormAutogradPyTorch


def get_rmsnorm_autograd_function_triton() -> type:
    """The RMSNorm torch.autograd.Function with Triton forward and backward kernels: ``.apply(x, g)``."""
    from systems.rmsnorm import RMSNormAutogradTriton

    return RMSNormAutogradTriton


def rmsnorm_backward_g_pytorch(grad_output, x, g):
    """dL/dg of RMSNorm (eps 1e-5), summed over every leading dim: shape (H,)."""
    from systems.rmsnorm import rmsnorm_backward_g

    return rmsnorm_backward_g(grad_output, x, g)


def rmsnorm_backward_x_pytorch(grad_output, x, g):
    """dL/dx of RMSNorm (eps 1e-5): the shape of x."""
    from systems.rmsnorm import rmsnorm_backward_x

    return rmsnorm_backward_x(grad_output, x, g)


def get_flashattention_autograd_function_pytorch() -> type:
    """FlashAttention-2 tiled in plain PyTorch: ``.apply(q, k, v, is_causal)``; saves q, k, v, O, L."""
    from systems.flash_attention import FlashAttentionPyTorch

    return FlashAttentionPyTorch


def get_flashattention_autograd_function_triton() -> type:
    """FlashAttention-2 with Triton forward and backward kernels: ``.apply(q, k, v, is_causal)``."""
    from systems.flash_attention import FlashAttentionTriton

    return FlashAttentionTriton


def make_transformer_lm(norm_impl: str, attention_impl: str, **config):
    """The unit-1 TransformerLM with the RMSNorm and attention implementations selected by name:
    norm_impl in {reference, pytorch_autograd, triton}, attention_impl in {reference, flash_pytorch,
    flash_triton}; ``config`` holds the other ModelConfig fields (vocab_size, d_model, ...)."""
    import systems  # noqa: F401  importing systems registers its kernels with the model
    from basics.model import ModelConfig, TransformerLM

    return TransformerLM(ModelConfig(norm_impl=norm_impl, attention_impl=attention_impl, **config))


# (end of section: rmsnorm and flash attention kernels)


# ---- distributed: ddp and sharded optimizer (issue 4) ----
def get_ddp_naive(module):
    """Wrap `module` for naive DDP (blocking all-reduce of every gradient after backward)."""
    from systems.ddp import DDPNaive

    return DDPNaive(module)


def ddp_naive_on_after_backward(ddp_model, optimizer):
    """After loss.backward(), before optimizer.step(): average the gradients over the ranks."""
    ddp_model.finish_gradient_synchronization()


def get_ddp_individual_parameters(module):
    """Wrap `module` for DDP with one async all-reduce per parameter, launched during backward."""
    from systems.ddp import DDPIndividualParameters

    return DDPIndividualParameters(module)


def ddp_individual_parameters_on_after_backward(ddp_model, optimizer):
    """After loss.backward(), before optimizer.step(): wait for the all-reduces and average."""
    ddp_model.finish_gradient_synchronization()


def get_ddp_bucketed(module, bucket_size_mb):
    """Wrap `module` for DDP with gradients all-reduced in buckets of about `bucket_size_mb` MiB."""
    from systems.ddp import DDPBucketed

    return DDPBucketed(module, bucket_size_mb)


def ddp_bucketed_on_after_backward(ddp_model, optimizer):
    """After loss.backward(), before optimizer.step(): wait for the bucket all-reduces and average."""
    ddp_model.finish_gradient_synchronization()


def ddp_bucketed_on_train_batch_start(ddp_model, optimizer):
    """Before each step's forward pass: reset per-step bucket bookkeeping."""
    ddp_model.on_train_batch_start()


def get_sharded_optimizer(params, optimizer_cls, **kwargs):
    """An optimizer that keeps `optimizer_cls(**kwargs)` state only for this rank's share of `params`."""
    from systems.sharded_optimizer import ShardedOptimizer

    return ShardedOptimizer(params, optimizer_cls, **kwargs)


def get_optimizer_state_bytes(optimizer):
    """Bytes of optimizer-state tensors this rank holds (for a sharded optimizer: its shard only)."""
    from systems.sharded_optimizer import optimizer_state_bytes

    return optimizer_state_bytes(optimizer)


def ddp_no_sync(ddp_model):
    """A context manager: backward passes inside it only accumulate local gradients."""
    return ddp_model.no_sync()


def init_distributed():
    """The training job's set-up: an object with rank, world_size, local_rank, device, is_distributed."""
    from systems.ddp import init_distributed

    return init_distributed()


def wrap_model(module, variant, bucket_size_mb):
    """The training job's wrapper: variant in none | naive | overlap | bucketed | torch."""
    from systems.ddp import wrap_model

    return wrap_model(module, variant, bucket_size_mb)


def wrapped_model_on_after_backward(wrapped, optimizer):
    """After loss.backward() on a wrap_model() result: average gradients over the ranks."""
    wrapped.finish_gradient_synchronization()


# (end of section: distributed: ddp and sharded optimizer)
