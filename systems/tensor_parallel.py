"""Tensor parallelism (Megatron-LM): every weight matrix split across the ranks of a group.

Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter Language Models Using Model
Parallelism" (2019), section 3; the course's lecture on parallelism. With t ranks in the group:

* **Column-parallel** Linear: rank r keeps rows r of W (d_out/t outputs). Its input x is whole on
  every rank, its output is this rank's slice of the features: y_r = x W_r^T. No communication.
* **Row-parallel** Linear: rank r keeps columns r of W (d_in/t inputs). Its input is the slice a
  column-parallel layer produced; its output is a partial sum: y = sum_r y_r (one all-reduce).

A sub-layer puts the two back to back, so the sliced activation in the middle never travels::

    FFN:        x -> f -> [W1, W3 column] -> SiLU(a) * b -> [W2 row] -> g -> y
    attention:  x -> f -> [q, k, v column: heads/t heads each] -> attend -> [output row] -> g -> y

    f: identity forward, all-reduce of the input's gradient backward (every rank used x)
    g: all-reduce forward (sum the partial outputs), identity backward

so each sub-layer costs one all-reduce of (batch, seq, d_model) in forward and one in backward.
Norms and the residual stream stay whole and identical on every rank (their gradients come out
identical too, so they need no communication).

The vocabulary is split as well (rows of the embedding and of the output head): a **vocab-parallel
embedding** looks up the ids it owns, writes zeros elsewhere, and all-reduces; the output head is
column-parallel, so each rank has the logits of its vocabulary slice, and the **vocab-parallel
cross-entropy** never gathers them::

    m = max_r(max local logits)           all-reduce MAX   (batch*seq numbers)
    S = sum_r sum exp(local - m);  z_t = logit of the target (on its owner, 0 elsewhere)
                                          one all-reduce SUM of (S, z_t)
    loss = log S + m - z_t;   d loss / d local logits = softmax_local - onehot_local (no communication)

Per training step of an L-layer model: forward 1 (embedding) + 2L (sub-layers) + 2 (loss)
all-reduces, backward 2L + 1 (the head's input): 4L + 4 in all.

Use::

    tp = TensorParallel(TransformerLM(config), group)    # converts the model in place
    local_logits = tp(tokens)                            # (batch, seq, vocab / t)
    loss = tp.loss(local_logits, targets)                # the full-vocabulary cross-entropy
    loss.backward(); optimizer.step()                    # optimizer over tp.parameters(): the slices

Simplifications: the model's ``Linear`` layers have no bias; vocab_size, num_heads, num_kv_heads and
d_ff must divide by t; no sequence parallelism (norms and dropout run on the whole activation on
every rank, so dropout needs the same RNG seed on every rank of the group).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from jaxtyping import Float, Int
from torch import Tensor, nn

from basics.model import FeedForward, Linear, MultiHeadSelfAttention, SwiGLU, TransformerLM
from systems.distributed import broadcast_from_rank0, group_rank_and_size
from systems.fsdp import all_gather_into

__all__ = [
    "TensorParallel",
    "copy_to_tensor_parallel",
    "reduce_from_tensor_parallel",
    "vocab_parallel_cross_entropy",
    "gather_vocab_parallel",
]


class _CopyToTensorParallel(torch.autograd.Function):
    """f: identity forward; backward all-reduces the gradient (each rank used the same input)."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        return x.view_as(x)  # a view, not x itself: autograd needs a new tensor to attach backward to

    @staticmethod
    def backward(ctx, grad: Tensor):
        # Each rank's slice of the next layer saw the same x: dL/dx is the sum of their contributions.
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _ReduceFromTensorParallel(torch.autograd.Function):
    """g: all-reduce forward (sum the ranks' partial outputs); identity backward."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        # Row-parallel: each rank multiplied its slice of the inputs' features; the output is the sum.
        x = x.contiguous().clone()  # clone: all_reduce works in place and x may be saved for backward
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None  # d(sum)/d(each part) = 1: every rank gets the full gradient as is


def copy_to_tensor_parallel(x: Tensor, group=None) -> Tensor:
    return x if group_rank_and_size(group)[1] == 1 else _CopyToTensorParallel.apply(x, group)


def reduce_from_tensor_parallel(x: Tensor, group=None) -> Tensor:
    return x if group_rank_and_size(group)[1] == 1 else _ReduceFromTensorParallel.apply(x, group)


def _sliced_linear(linear: Linear, dim: int, rank: int, size: int) -> Linear:
    """A Linear holding rank ``rank``'s slice of ``linear.weight`` (out, in) along ``dim``:
    rows (dim 0, column-parallel) or columns (dim 1, row-parallel)."""
    if getattr(linear, "bias", None) is not None:
        raise ValueError("tensor parallelism here supports Linear layers without bias")
    weight = linear.weight.detach()
    if weight.shape[dim] % size:
        raise ValueError(f"cannot split a weight of shape {tuple(weight.shape)} into {size} along dim {dim}")
    piece = weight.chunk(size, dim=dim)[rank]  # (out/t, in) for dim 0, (out, in/t) for dim 1
    sliced = Linear(piece.shape[1], piece.shape[0], device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        sliced.weight.copy_(piece)
    return sliced


def _split_attention(attn: MultiHeadSelfAttention, rank: int, size: int) -> dict[str, int]:
    """Keep heads/t query heads and kv_heads/t key/value heads: q, k, v column-parallel (their rows
    are ordered by head, so a block of rows is a block of whole heads), output row-parallel. The
    attention itself is the model's own code, run on this rank's heads. Returns {name: split dim}."""
    if attn.num_heads % size or attn.num_kv_heads % size:
        raise ValueError(
            f"num_heads ({attn.num_heads}) and num_kv_heads ({attn.num_kv_heads}) must divide by {size}"
        )
    for name in ("q_proj", "k_proj", "v_proj"):
        setattr(attn, name, _sliced_linear(getattr(attn, name), 0, rank, size))
    attn.output_proj = _sliced_linear(attn.output_proj, 1, rank, size)
    attn.num_heads //= size
    attn.num_kv_heads //= size
    return {"q_proj.weight": 0, "k_proj.weight": 0, "v_proj.weight": 0, "output_proj.weight": 1}


def _split_ffn(ffn: SwiGLU | FeedForward, rank: int, size: int) -> dict[str, int]:
    """W1 (and SwiGLU's W3) column-parallel, W2 row-parallel. Returns {name: split dim}."""
    ffn.w1 = _sliced_linear(ffn.w1, 0, rank, size)
    splits = {"w1.weight": 0, "w2.weight": 1}
    if isinstance(ffn, SwiGLU):
        ffn.w3 = _sliced_linear(ffn.w3, 0, rank, size)
        splits["w3.weight"] = 0
    ffn.w2 = _sliced_linear(ffn.w2, 1, rank, size)
    return splits


def _make_sublayer_parallel(module: nn.Module, group) -> None:
    """Wrap a split sub-layer in f (on its input) and g (on its output), as module hooks, so the
    module keeps its name and parameter names."""
    module.register_forward_pre_hook(lambda m, args: (copy_to_tensor_parallel(args[0], group), *args[1:]))
    module.register_forward_hook(lambda m, args, out: reduce_from_tensor_parallel(out, group))


class VocabParallelEmbedding(nn.Module):
    """Rows [start, start + vocab/t) of the embedding; other ids give zeros; an all-reduce sums."""

    def __init__(self, weight: nn.Parameter, start: int, group):
        super().__init__()
        self.weight, self.start, self.group = weight, start, group

    def forward(self, token_ids: Int[Tensor, "..."]) -> Float[Tensor, "... d_model"]:
        local = token_ids - self.start  # the id's row in this rank's slice, if it is in range
        mine = (local >= 0) & (local < self.weight.shape[0])
        # Clamp so every lookup is in bounds, then zero the rows that belong to another rank: after
        # the sum over ranks each id gets exactly its owner's row.
        rows = self.weight[local.clamp(0, self.weight.shape[0] - 1)]  # (..., d_model)
        rows = rows * mine.unsqueeze(-1).to(rows.dtype)  # zero where another rank owns the id
        return reduce_from_tensor_parallel(rows, self.group)


class VocabParallelHead(nn.Module):
    """Column-parallel output head: the logits of this rank's vocabulary slice."""

    def __init__(self, weight: nn.Parameter, group):
        super().__init__()
        self.weight, self.group = weight, group

    def forward(self, x: Float[Tensor, "... d_model"]) -> Float[Tensor, "... vocab_local"]:
        # (..., d_model) @ (d_model, vocab/t): this rank's columns of the logits, no communication.
        return copy_to_tensor_parallel(x, self.group) @ self.weight.T


class _VocabParallelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, start: int, group) -> Tensor:
        ctx.dtype = logits.dtype
        logits = logits.float()  # (N, vocab_local); fp32 for the sum over the vocabulary
        m = logits.amax(dim=-1)  # (N,)
        # The global max over the full vocabulary, so every rank subtracts the same m (stable exp).
        if group_rank_and_size(group)[1] > 1:
            dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group)
        exp = (logits - m[:, None]).exp()  # (N, vocab_local)
        local = targets - start  # the target's column in this rank's slice, if it owns it
        mine = (local >= 0) & (local < logits.shape[-1])
        target_logit = logits.gather(-1, local.clamp(0, logits.shape[-1] - 1)[:, None]).squeeze(-1)
        # One all-reduce for both sums: S = sum_v exp(z_v - m), and z_t (non-zero on its owner only).
        sums = torch.stack([exp.sum(dim=-1), target_logit * mine], dim=0)  # (2, N): S and z_t
        if group_rank_and_size(group)[1] > 1:
            dist.all_reduce(sums, group=group)
        total, target_logit = sums[0], sums[1]
        ctx.save_for_backward(exp, total, local, mine)
        return (total.log() + m - target_logit).mean()  # -log softmax(z)_t = log S + m - z_t

    @staticmethod
    def backward(ctx, grad: Tensor):
        exp, total, local, mine = ctx.saved_tensors
        grad_logits = exp / total[:, None]  # this rank's part of the softmax
        rows = torch.arange(len(local), device=local.device)[mine]
        grad_logits[rows, local[mine]] -= 1.0  # - onehot(t), on the rank that owns t only
        grad_logits *= grad / len(local)  # the loss was a mean over N positions
        return grad_logits.to(ctx.dtype), None, None, None


def vocab_parallel_cross_entropy(
    local_logits: Float[Tensor, "... vocab_local"], targets: Int[Tensor, "..."], start: int, group=None
) -> Float[Tensor, ""]:
    """Mean cross-entropy over the full vocabulary from each rank's slice of the logits
    (columns [start, start + vocab_local)); see the module docstring."""
    flat = local_logits.reshape(-1, local_logits.shape[-1])  # (N = batch * seq, vocab_local)
    return _VocabParallelCrossEntropy.apply(flat, targets.reshape(-1), start, group)


def gather_vocab_parallel(local: Tensor, group=None) -> Tensor:
    """The full last dimension from every rank's slice (e.g. full logits, for sampling or tests)."""
    _, size = group_rank_and_size(group)
    if size == 1:
        return local
    return _all_gather_along(local, -1, size, group)


def _all_gather_along(tensor: Tensor, dim: int, size: int, group) -> Tensor:
    """Every rank's ``tensor`` concatenated along ``dim`` (in rank order)."""
    pieces = tensor.movedim(dim, 0).contiguous()  # (piece, ...): all-gather concatenates dim 0
    out = pieces.new_empty((size * pieces.shape[0], *pieces.shape[1:]))  # (size * piece, ...)
    all_gather_into(out, pieces, group)
    return out.movedim(0, dim)  # the gathered axis back in its place


class TensorParallel(nn.Module):
    """Convert a :class:`TransformerLM` (in place) to tensor parallelism over ``group``; see the
    module docstring. Every rank must build the same model (it is broadcast from the group's first
    rank to make sure). Parameter names stay those of the model; ``split_dims`` says along which
    dimension each split weight was cut (the others are whole on every rank)."""

    def __init__(self, model: TransformerLM, group=None):
        super().__init__()
        self.rank, self.size = group_rank_and_size(group)
        self.group = group
        config = model.config
        if config.vocab_size % self.size:
            raise ValueError(
                f"vocab_size ({config.vocab_size}) must divide by the tensor-parallel size {self.size}"
            )
        if self.size > 1:
            broadcast_from_rank0(model, group)
        self.vocab_start = self.rank * (config.vocab_size // self.size)
        self.split_dims = self._split_vocabulary(model)
        for i, block in enumerate(model.layers):
            for sub, split in (("attn", _split_attention), ("ffn", _split_ffn)):
                names = split(getattr(block, sub), self.rank, self.size)
                self.split_dims.update({f"layers.{i}.{sub}.{name}": dim for name, dim in names.items()})
                _make_sublayer_parallel(getattr(block, sub), group)
        self.model = model

    def _split_vocabulary(self, model: TransformerLM) -> dict[str, int]:
        tied = model.lm_head.weight is model.token_embeddings.weight
        rows = model.token_embeddings.weight.detach().chunk(self.size, dim=0)[self.rank]
        embedding = nn.Parameter(rows.clone())
        model.token_embeddings = VocabParallelEmbedding(embedding, self.vocab_start, self.group)
        if tied:
            head = embedding
        else:
            head = nn.Parameter(model.lm_head.weight.detach().chunk(self.size, dim=0)[self.rank].clone())
        model.lm_head = VocabParallelHead(head, self.group)
        return {"token_embeddings.weight": 0, "lm_head.weight": 0}

    def forward(
        self, token_ids: Int[Tensor, "batch seq"], *args: Any
    ) -> Float[Tensor, "batch seq vocab_local"]:
        return self.model(token_ids, *args)

    def loss(self, local_logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of ``targets`` over the full vocabulary (no logits gathered)."""
        return vocab_parallel_cross_entropy(local_logits, targets, self.vocab_start, self.group)

    def gather_logits(self, local_logits: Tensor) -> Tensor:
        return gather_vocab_parallel(local_logits, self.group)

    @torch.no_grad()
    def _gather(self, tensor: Tensor, dim: int | None) -> Tensor:
        """The whole tensor from every rank's slice along ``dim`` (None: not split)."""
        if dim is None or self.size == 1:
            return tensor.detach().clone()
        return _all_gather_along(tensor.detach(), dim, self.size, self.group).contiguous()

    def gather_full(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Whole tensors from this rank's slices, by parameter name (e.g. ``model.state_dict()`` or
        the gradients); names not split are returned as they are. Collective."""
        return {name: self._gather(tensor, self.split_dims.get(name)) for name, tensor in tensors.items()}

    def _split_dim_by_param(self, optimizer: torch.optim.Optimizer) -> list[tuple[nn.Parameter, int | None]]:
        names = {id(p): n for n, p in self.model.named_parameters()}
        params = [p for group in optimizer.param_groups for p in group["params"]]
        return [(p, self.split_dims.get(names.get(id(p), ""))) for p in params]

    def full_optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``optimizer.state_dict()`` with per-element state of split weights (AdamW's moments)
        gathered whole: the state of the same optimizer on the unconverted model. Collective."""
        state_dict = optimizer.state_dict()
        full = {}
        for index, (param, dim) in enumerate(self._split_dim_by_param(optimizer)):
            if index in state_dict["state"]:
                full[index] = {
                    key: self._gather(value, dim)
                    if isinstance(value, Tensor) and value.shape == param.shape
                    else value
                    for key, value in state_dict["state"][index].items()
                }
        return {"state": full, "param_groups": state_dict["param_groups"]}

    def load_full_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
        """Load the state of the optimizer on the unconverted model: each rank keeps its slices."""
        sliced = {}
        for index, (param, dim) in enumerate(self._split_dim_by_param(optimizer)):
            if index not in state_dict["state"]:
                continue
            entry = {}
            for key, value in state_dict["state"][index].items():
                if isinstance(value, Tensor) and dim is not None and value.dim() == param.dim():
                    value = value.chunk(self.size, dim=dim)[self.rank].clone()
                entry[key] = value
            sliced[index] = entry
        optimizer.load_state_dict({"state": sliced, "param_groups": state_dict["param_groups"]})

    def full_state_dict(self) -> dict[str, Tensor]:
        """The unconverted model's state dict, gathered (on every rank). Collective."""
        return self.gather_full(self.model.state_dict())

    @torch.no_grad()
    def load_full_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load an unconverted model's state dict: each rank keeps its slices."""
        own = self.model.state_dict(keep_vars=True)
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if missing or unexpected:
            raise ValueError(
                f"TensorParallel.load_full_state_dict: missing {missing}, unexpected {unexpected}"
            )
        for name, tensor in own.items():
            value = state[name]
            dim = self.split_dims.get(name)
            if dim is not None:
                value = value.chunk(self.size, dim=dim)[self.rank]
            if value.shape != tensor.shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} does not fit {tuple(tensor.shape)}")
            tensor.copy_(value)
