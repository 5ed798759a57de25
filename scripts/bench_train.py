"""Benchmark one training step (forward + backward + AdamW) of our TransformerLM against HF Llama.

Three models with the identical architecture (same sizes, SwiGLU, RoPE, RMSNorm, untied) and the
identical weights (the HF model gets ours through basics.export), trained on the same batch in the
same precision with the same optimizer and loss (basics.optim.AdamW by default, basics.nn_utils
cross_entropy):

    ours (reference)   TransformerLM(ModelConfig(...))             every op written out
    ours (fast)        TransformerLM(ModelConfig(..., **FAST))     F.rms_norm + SDPA + complex RoPE
    HF Llama           transformers.LlamaForCausalLM                attn_implementation="sdpa"

Steps are timed in interleaved rounds (a round times a few steps of each model in turn), so a busy
machine slows all three alike; the table shows the median and best step time, tokens/s, the ratio to HF
(> 1 means ours is faster), peak memory (CPU: peak RSS growth in a fresh process per model; CUDA:
max allocated) and, on CUDA, MFU = 3 x forward FLOPs per token (about 6N plus attention) x tokens/s
over the device's peak. Default: a small model, a couple of minutes on 2 CPU cores::

    python scripts/bench_train.py
    python scripts/bench_train.py --d-model 512 --num-layers 4 --num-heads 16 --d-ff 1344 --vocab-size 10000
    python scripts/bench_train.py --preset tinystories --device cuda --precision bf16-autocast --compile
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import platform
import statistics
import sys
from contextlib import nullcontext

import torch

from basics.cli import (
    ArgumentParser,
    add_config_arguments,
    config_from_arguments,
    device_name,
    positive_int,
    run_main,
)
from basics.device import check_device
from basics.export import hf_llama_config, hf_llama_state_dict
from basics.model import ModelConfig, TransformerLM
from basics.nn_utils import cross_entropy
from basics.optim import AdamW
from systems.benchmarking import step_times_ms

PRESETS = {
    # ~3M non-embedding parameters: a few seconds per round on 2 busy CPU cores.
    "cpu": ModelConfig(vocab_size=4096, context_length=128, d_model=256, num_layers=4, num_heads=8, d_ff=704),
    # The course's TinyStories model.
    "tinystories": ModelConfig(
        vocab_size=10_000, context_length=256, d_model=512, num_layers=4, num_heads=16, d_ff=1344
    ),
}
MODELS = ("ours (reference)", "ours (fast)", "HF Llama")
# Dense peak TFLOP/s by device name fragment: (bf16 tensor core, fp32 without tensor cores).
PEAK_TFLOPS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5), "L4": (121.0, 30.3)}


# The "ours (fast)" switches: torch's fused kernels, and RoPE as one complex multiply (fastest in eager
# mode; under --compile the real-arithmetic reference RoPE, which Inductor fuses, replaces it).
FAST = dict(norm_impl="torch", attention_impl="sdpa", rope_impl="complex")


def build_models(
    config: ModelConfig, device: torch.device, names: tuple[str, ...] = MODELS, fast_rope: str = "complex"
) -> dict[str, torch.nn.Module]:
    """The models named in ``names``, all with the weights of one seeded reference initialisation."""
    torch.manual_seed(0)
    reference = TransformerLM(config)
    models: dict[str, torch.nn.Module] = {}
    if "ours (reference)" in names:
        models["ours (reference)"] = reference
    if "ours (fast)" in names:
        models["ours (fast)"] = TransformerLM(dataclasses.replace(config, **{**FAST, "rope_impl": fast_rope}))
        models["ours (fast)"].load_state_dict(reference.state_dict())
    if "HF Llama" in names:
        import transformers

        hf_config = transformers.LlamaConfig.from_dict(hf_llama_config(config))
        hf_config.use_cache = False
        hf = transformers.LlamaForCausalLM._from_config(hf_config, attn_implementation="sdpa")
        missing, unexpected = hf.load_state_dict(hf_llama_state_dict(reference), strict=False)
        if unexpected or [m for m in missing if "rotary" not in m]:
            raise RuntimeError(f"HF weights mismatch: missing {missing}, unexpected {unexpected}")
        models["HF Llama"] = hf
    return {name: models[name].to(device) for name in names}


def logits_of(name: str, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(input_ids=x).logits if name == "HF Llama" else model(x)


def make_step(name, model, optimizer, x, y, autocast, compile: bool = False):
    """One training step of ``model``. With ``compile`` the forward *and* the loss are one compiled
    function (as in basics.train), so every model gets its cross-entropy fused the same way."""

    def loss_of(x, y):
        with autocast():
            return cross_entropy(logits_of(name, model, x), y)

    loss_fn = torch.compile(loss_of) if compile else loss_of

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(x, y)
        loss.backward()
        optimizer.step()
        return loss.item()  # .item() synchronises, so a timed step includes the device work

    return step


def make_optimizer(kind: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    cls = AdamW if kind == "ours" else torch.optim.AdamW
    return cls(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)


def autocast_for(precision: str, device: torch.device):
    if precision == "bf16-autocast":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_child(name, config, args, queue) -> None:
    """Peak RSS growth (MiB) of building one model and taking two steps, in a fresh process."""
    torch.set_num_threads(args.threads)
    batch = torch.randint(0, config.vocab_size, (args.batch_size, config.context_length + 1))
    # Load every code path first (lazy imports, autograd, optimizer) with a throwaway tiny model, so
    # the measured growth is this model's tensors, not library code.
    tiny = dataclasses.replace(config, vocab_size=64, d_model=2 * config.num_heads, d_ff=8, num_layers=1)
    warm = build_models(tiny, torch.device("cpu"), (name,))[name]
    make_step(
        name,
        warm,
        make_optimizer(args.optimizer, warm),
        batch[:, :-1] % 64,
        batch[:, 1:] % 64,
        autocast_for(args.precision, torch.device("cpu")),
    )()
    del warm
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    before = _rss_mb("VmRSS")
    model = build_models(config, torch.device("cpu"), (name,))[name]
    model.to(torch.bfloat16 if args.precision == "bf16" else torch.float32)
    optimizer = make_optimizer(args.optimizer, model)
    step = make_step(
        name, model, optimizer, batch[:, :-1], batch[:, 1:], autocast_for(args.precision, torch.device("cpu"))
    )
    for _ in range(2):
        step()
    queue.put(_rss_mb("VmHWM") - before)


def cpu_peak_memory_mb(name, config, args) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_child, args=(name, config, args, queue))
    process.start()
    process.join()
    return queue.get() if not queue.empty() else float("nan")


def peak_flops(device: torch.device, precision: str) -> float | None:
    name = torch.cuda.get_device_name(device)
    for fragment, (bf16, fp32) in PEAK_TFLOPS.items():
        if fragment in name:
            return 1e12 * (fp32 if precision == "fp32" else bf16)
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="model sizes (default: cpu)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="sequences per step (default: 8)")
    parser.add_argument(
        "--device", type=device_name, default="cpu", help="cpu | cuda | cuda:N (default: cpu)"
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16-autocast", "bf16"],
        default="fp32",
        help="fp32; fp32 weights with bf16 autocast; or bf16 weights (default: fp32)",
    )
    parser.add_argument(
        "--optimizer", choices=["ours", "torch"], default="ours", help="AdamW for every model"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument(
        "--rounds", type=positive_int, default=6, help="interleaved timing rounds (default: 6)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=1, help="timed steps per model per round (default: 1)"
    )
    parser.add_argument(
        "--warmup", type=positive_int, default=1, help="untimed steps per model first (default: 1)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=torch.get_num_threads(), help="torch CPU threads"
    )
    parser.add_argument(
        "--memory", action=argparse.BooleanOptionalAction, default=True, help="measure peak memory"
    )
    add_config_arguments(parser, ModelConfig)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from_arguments(ModelConfig, args, base=PRESETS[args.preset])
    config = dataclasses.replace(
        config, norm_impl="reference", attention_impl="reference", rope_impl="reference"
    )
    device = check_device(args.device)  # an unusable device is a one-line error (exit 2)
    torch.set_num_threads(args.threads)
    models = build_models(config, device, fast_rope="reference" if args.compile else "complex")
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    for model in models.values():
        model.to(dtype).train()
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, config.vocab_size, (args.batch_size, config.context_length + 1), generator=g)
    x, y = batch[:, :-1].to(device), batch[:, 1:].to(device)
    autocast = autocast_for(args.precision, device)

    # Same weights, same input: the three must agree before we time them.
    with torch.no_grad(), autocast():
        ref_logits = logits_of("ours (reference)", models["ours (reference)"], x).float()
        agreement = {
            name: (logits_of(name, m, x).float() - ref_logits).abs().max().item()
            for name, m in models.items()
        }
    steps = {
        name: make_step(name, model, make_optimizer(args.optimizer, model), x, y, autocast, args.compile)
        for name, model in models.items()
    }
    first_loss = {name: step() for name, step in steps.items()}
    for _ in range(args.warmup - 1):
        for step in steps.values():
            step()
    times, memory = time_steps(steps, args, device)
    if device.type == "cpu" and args.memory and sys.platform == "linux":
        memory = {name: cpu_peak_memory_mb(name, config, args) for name in models}
    print_table(config, args, device, times, memory, first_loss, agreement)
    return 0


def time_steps(steps: dict, args: argparse.Namespace, device: torch.device) -> tuple[dict, dict]:
    """Seconds per step of every model, in interleaved rounds, and (CUDA) peak memory in MiB."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    memory: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            # CUDA events around each step on a GPU (a host timer would add launch overhead), wall
            # time on the CPU; each step also ends in .item(), so no step overlaps the next.
            times[name] += [ms / 1e3 for ms in step_times_ms(step, device, warmup=0, steps=args.steps)]
            if device.type == "cuda":
                memory[name] = max(memory.get(name, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)
    return times, memory


def print_table(config, args, device, times, memory, first_loss, agreement) -> None:
    import transformers

    tokens = args.batch_size * config.context_length
    train_flops_per_token = 3 * config.flops_per_token()  # forward + backward (2x forward)
    peak = peak_flops(device, args.precision) if device.type == "cuda" else None
    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    cpu = platform.processor() or platform.machine()
    where = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {cpu}, {args.threads} threads"
    )
    print(f"device: {where} | torch {torch.__version__} | transformers {transformers.__version__}")
    print(
        f"model: vocab {config.vocab_size}, context {config.context_length}, d_model {config.d_model}, "
        f"layers {config.num_layers}, heads {config.num_heads}, d_ff {config.ffn_dim}, "
        f"{config.num_parameters():,} parameters ({config.num_parameters(non_embedding=True):,} non-embedding)"
    )
    print(
        f"batch {args.batch_size} x {config.context_length} = {tokens:,} tokens/step | precision {args.precision} | "
        f"optimizer {args.optimizer} AdamW | compile {args.compile} | {args.rounds} rounds x {args.steps} steps "
        f"after {args.warmup} warmup"
    )
    header = (
        f"{'model':<18} {'step ms':>9} {'best ms':>9} {'tokens/s':>10} {'vs HF':>7} {'best vs HF':>10} "
        f"{'peak MB':>9} {'loss@1':>8} {'max|dlogit|':>11}"
    )
    if peak:
        header += f" {'MFU':>6}"
    print("\n" + header + "\n" + "-" * len(header))
    for name in times:
        row = (
            f"{name:<18} {1000 * median[name]:>9.1f} {1000 * best[name]:>9.1f} {tokens / median[name]:>10,.0f} "
            f"{median['HF Llama'] / median[name]:>6.2f}x {best['HF Llama'] / best[name]:>9.2f}x {(f'{memory[name]:.0f}' if name in memory else '-'):>9} "
            f"{first_loss[name]:>8.4f} {agreement[name]:>11.1e}"
        )
        if peak:
            row += f" {100 * train_flops_per_token * tokens / median[name] / peak:>5.1f}%"
        print(row)
    print(
        "\nstep ms / tokens/s / vs HF: medians; best: fastest step (less sensitive to a busy machine). "
        "vs HF = HF step time / our step time (> 1: ours is faster).\nmax|dlogit| = largest logit difference "
        "from the reference model on the benchmark batch (same weights)."
    )


if __name__ == "__main__":
    run_main(main)
