"""A training run's metrics: ``metrics.jsonl`` (one JSON record per log line), its wandb mirror, its plot.

The file is the run's record, so it follows the run's checkpoints: a fresh run starts it empty, and a
resumed run keeps only the records up to the step it resumed from (the steps after it are trained
again and would otherwise be logged twice).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from basics.files import atomic_write

__all__ = ["MetricsLog", "plot_loss_curve"]


class MetricsLog:
    """Append-only JSONL metrics (rank 0), mirrored to wandb when asked.

    A fresh run starts the file empty; a resumed run keeps the records up to its checkpoint's step and
    drops the rest (steps the killed run logged after its last checkpoint are trained again, and
    would otherwise appear twice), including a line cut short by the kill.
    """

    def __init__(self, path: Path, enabled: bool, config: Any, start_step: int):
        self.path, self.enabled, self.wandb = path, enabled, None
        if not enabled:
            return
        kept = []
        if start_step > 0 and path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and record.get("step", math.inf) <= start_step:
                    kept.append(line + "\n")
        with atomic_write(path, "w") as f:
            f.write("".join(kept))
        if config.wandb:
            import wandb

            self.wandb = wandb.init(
                project=config.wandb_project,
                mode=config.wandb_mode,
                config=asdict(config),
                dir=str(path.parent),
            )

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(record, step=record.get("step"))

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path) -> Path:
    """Training and validation loss against step from a run's metrics.jsonl, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line.strip()]
    train_points = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val_points = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    for points, label in ((train_points, "train"), (val_points, "validation")):
        if points:
            ax.plot(*zip(*points), label=label, marker="o" if label == "validation" else None)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)
