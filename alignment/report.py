"""Small helpers for the stage scripts: their shared flags, a log line, a before/after table as text and
a metric curve PNG.

Library code does not print; these return strings or write files, and the scripts show them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from basics.cli import device_name, output_dir, positive_int


def add_stage_arguments(parser: argparse.ArgumentParser, out: str, init: str | None) -> None:
    """The flags every stage script takes: --init, --out, --device, --threads, --resume."""
    init_help = "checkpoint file or HF model name/path" + (
        " (default: a fresh model)" if init is None else ""
    )
    parser.add_argument("--init", default=init, help=init_help)
    parser.add_argument("--out", type=output_dir, default=Path(out), help="output directory")
    parser.add_argument("--device", type=device_name, default="cpu", help="torch device")
    parser.add_argument(
        "--threads", type=positive_int, default=1, help="torch CPU threads (1: reproducible timings)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints"
    )


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """A plain-text table with one column per key of the first row; floats get 3 decimals."""
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [
        [f"{row.get(k, ''):.3f}" if isinstance(row.get(k), float) else str(row.get(k, "")) for k in keys]
        for row in rows
    ]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def save_curve(
    history: Sequence[dict[str, float]],
    keys: Sequence[str],
    path: str | Path,
    title: str,
    x_key: str = "step",
) -> Path:
    """Plot ``keys`` of ``history`` (skipping steps that lack them) against ``x_key`` into a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(h[x_key], h[key]) for h in history if key in h]
        if points:
            ax.plot(*zip(*points), marker="o" if len(points) < 30 else None, label=key)
    ax.set_xlabel(x_key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_metrics(metrics: dict[str, object], elapsed_s: float | None = None) -> str:
    """One log line: ``[   12s] step 25  loss 0.4321  lr 0.003 ...`` (floats to 4 significant digits)."""
    parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
    head = f"[{elapsed_s:6.0f}s] " if elapsed_s is not None else ""
    return head + "  ".join(parts)


def policy_path(out_dir: Path, init: str | None) -> Path:
    """Where a stage saves its policy: ``policy.pt`` for our checkpoints, a ``policy`` folder for HF."""
    return out_dir / ("policy.pt" if init is None or Path(init).is_file() else "policy")
