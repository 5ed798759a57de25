"""Adapters for the systems graders: the only door from tests/systems to an implementation.

Each function forwards to this library's code. To grade another implementation, point the suite at
a module with the same functions: `pytest tests/systems --adapters systems=student_pkg.adapters`.
"""

from __future__ import annotations


# ---- rmsnorm and flash attention kernels ----
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


# ---- distributed: ddp and sharded optimizer ----
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


# ---- A2 2026 release: generic DDP and FSDP ----
def get_ddp(module):
    """Wrap `module` for data-parallel training (any correct DDP; ours: bucketed, 25 MiB buckets)."""
    from systems.ddp import DDPBucketed

    return DDPBucketed(module, bucket_size_mb=25.0)


def ddp_on_after_backward(ddp_model, optimizer):
    """After loss.backward(), before optimizer.step(): gradients averaged over the ranks."""
    ddp_model.finish_gradient_synchronization()


def get_fsdp(module, compute_dtype=None):
    """Shard the weights of every Linear and Embedding in `module` over the ranks; with
    `compute_dtype` (bf16/fp16) the forward and backward compute in it, fp32 master weights."""
    from systems.fsdp import FSDP

    return FSDP(module, compute_dtype)


def fsdp_on_after_backward(fsdp_model, optimizer):
    """After loss.backward(), before optimizer.step(): each rank's shard gradients are its slice of
    the mean gradient, replicated gradients averaged."""
    fsdp_model.finish_gradient_synchronization()


def fsdp_gather_full_params(fsdp_model):
    """The full fp32 state dict (names of the unwrapped module), on every rank."""
    return fsdp_model.full_state_dict()


# (end of section: A2 2026 release: generic DDP and FSDP)


# ---- FSDP extensions: options, checkpoints ----
def get_fsdp_with_options(module, compute_dtype=None, prefetch=True, reduce_dtype=None):
    """FSDP with this library's options: `prefetch` (gather the next layer's weight ahead) and
    `reduce_dtype` (dtype of the gradient reduce-scatter; None: fp32)."""
    import torch

    from systems.fsdp import FSDP

    return FSDP(module, compute_dtype, prefetch=prefetch, reduce_dtype=reduce_dtype or torch.float32)


def get_adamw_cls():
    """This library's AdamW (unit 1)."""
    from basics.optim import AdamW

    return AdamW


def fsdp_save_sharded_checkpoint(fsdp_model, optimizer, iteration, directory):
    """Every rank writes its own shards, optimizer state and RNG states into `directory`."""
    from systems.sharded_checkpoint import save_sharded_checkpoint

    return save_sharded_checkpoint(fsdp_model, optimizer, iteration, directory)


def fsdp_load_sharded_checkpoint(directory, iteration, fsdp_model, optimizer):
    """Load this rank's shard of the checkpoint at `iteration`; returns the iteration."""
    from systems.sharded_checkpoint import load_sharded_checkpoint

    return load_sharded_checkpoint(directory, iteration, fsdp_model, optimizer)


def fsdp_save_gathered_checkpoint(fsdp_model, optimizer, iteration, path):
    """Collective: gather full weights and optimizer state; rank 0 writes one plain checkpoint."""
    from systems.sharded_checkpoint import save_gathered_checkpoint

    return save_gathered_checkpoint(fsdp_model, optimizer, iteration, path)


def fsdp_load_gathered_checkpoint(path, fsdp_model, optimizer):
    """Load a plain (single-process or gathered) checkpoint into FSDP on any number of ranks."""
    from systems.sharded_checkpoint import load_gathered_checkpoint

    return load_gathered_checkpoint(path, fsdp_model, optimizer)


def load_plain_checkpoint(path, model, optimizer):
    """The unit-1 loader, for an unwrapped model (returns the iteration)."""
    from basics.checkpoint import load_checkpoint

    return load_checkpoint(path, model, optimizer)


# (end of section: FSDP extensions)


# ---- tensor and pipeline parallelism ----
def get_tensor_parallel(model):
    """Convert a TransformerLM to Megatron tensor parallelism over all ranks (in place)."""
    from systems.tensor_parallel import TensorParallel

    return TensorParallel(model)


def tensor_parallel_forward(tp_model, token_ids):
    """This rank's slice of the logits: (batch, seq, vocab / ranks)."""
    return tp_model(token_ids)


def tensor_parallel_loss(tp_model, local_logits, targets):
    """Mean cross-entropy over the full vocabulary from the local logits (no logits gathered)."""
    return tp_model.loss(local_logits, targets)


def tensor_parallel_gather_logits(tp_model, local_logits):
    """The full logits (batch, seq, vocab), for checking."""
    return tp_model.gather_logits(local_logits)


def tensor_parallel_full_grads(tp_model):
    """Whole gradients by the unconverted model's parameter names (collective)."""
    return tp_model.gather_full(
        {n: p.grad for n, p in tp_model.model.named_parameters() if p.grad is not None}
    )


def tensor_parallel_full_state_dict(tp_model):
    """The unconverted model's state dict, gathered (collective)."""
    return tp_model.full_state_dict()


def get_pipeline_parallel(model, num_microbatches, schedule):
    """This rank's stage of a pipeline over all ranks; schedule in {"gpipe", "1f1b"}."""
    from systems.pipeline_parallel import PipelineParallel

    return PipelineParallel(model, num_microbatches, schedule)


def pipeline_train_step(pipeline, inputs, targets):
    """One pipelined forward + backward of the whole batch (mean cross-entropy); gradients are left
    in this stage's parameters. Returns (loss, executed ops) where ops lists ("F"|"B", micro-batch)."""
    from basics.nn_utils import cross_entropy

    stats = pipeline.train_step(inputs, targets, cross_entropy)
    return stats.loss, stats.order


def pipeline_named_parameters(pipeline):
    """This stage's parameters under the unconverted model's names."""
    return dict(pipeline.module.named_parameters())


# (end of section: tensor and pipeline parallelism)


# ---- GPU readiness: ahead-of-time compile for an H100 (extension) ----
def triton_resource_report(part: str) -> list[dict]:
    """Every shipped launch configuration of ``part`` (rmsnorm | flash_forward | flash_dkdv | flash_dq)
    compiled for sm_90 without a GPU: dicts with kernel, config, registers, spill_bytes, shared_bytes.
    Must run in a process without TRITON_INTERPRET."""
    from systems.triton_resources import resource_report

    return resource_report(part)


def triton_launch_resources(kernel, grid, *args, **kwargs) -> dict:
    """``kernel[grid](*args, **kwargs)`` compiled for sm_90 without a GPU (tensors may be on the meta
    device): a dict with registers, spill_bytes, shared_bytes."""
    from dataclasses import asdict

    from systems.triton_launch import Launch
    from systems.triton_resources import compile_for_gpu, resource_usage

    return asdict(resource_usage(compile_for_gpu(Launch(kernel, grid, args, kwargs))))


# (end of section: GPU readiness)


# ---- GPU readiness: scripts/gpu_check.py (extension) ----
def gpu_check_names() -> list[str]:
    """The names of the checks of scripts/gpu_check.py, in the order it runs them."""
    from systems.gpu_check import CHECKS

    return list(CHECKS)


def run_gpu_checks(names, device, checks=None, **sizes) -> list[dict]:
    """Run gpu_check's checks ``names`` on ``device`` with ``sizes`` (GpuCheckConfig fields; a
    ``train_model`` dict becomes a ModelConfig). ``checks``: {name: (description, fn(config, device)
    -> rows)} replaces the built-in ones. Returns the rows as dicts (check, case, status, measured)."""
    from dataclasses import asdict

    from basics.model import ModelConfig
    from systems.gpu_check import GpuCheckConfig, run_checks

    if isinstance(sizes.get("train_model"), dict):
        sizes["train_model"] = ModelConfig(**sizes["train_model"])
    return [asdict(row) for row in run_checks(names, GpuCheckConfig(**sizes), device, checks=checks)]


def gpu_check_row(check: str, case: str, status: str, measured: str):
    """One row of gpu_check's table (what a check function returns a list of)."""
    from systems.gpu_check import CheckRow

    return CheckRow(check, case, status, measured)


def format_gpu_check_table(rows: list[dict]) -> str:
    """gpu_check's table of ``rows`` (dicts with check, case, status, measured)."""
    from systems.gpu_check import CheckRow, format_table

    return format_table([CheckRow(**row) for row in rows])


# (end of section: GPU readiness, gpu_check)


# ---- cost accounting ----
def parallel_cost(strategy, model_config, world_size, tokens_per_rank, compute_bytes=4):
    """The formulas: (bytes each rank sends per step, bytes of weights+grads+AdamW per rank) of
    strategy in {ddp, fsdp, tp, pp} for a TransformerLM with ``model_config`` (ModelConfig fields)."""
    from basics.model import ModelConfig
    from systems.parallel_cost import strategy_costs

    costs = strategy_costs(strategy, ModelConfig(**model_config), world_size, tokens_per_rank, compute_bytes)
    return costs.sent_bytes, costs.state_bytes


# (end of section: cost accounting)
