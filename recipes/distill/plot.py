"""Loss curves of a run (PNG), smoothed with an exponential moving average."""

from __future__ import annotations

import json
import os
from pathlib import Path

TERMS = ("loss", "focal", "dice", "iou", "outside", "dense", "embed", "tokens", "output", "mask_iou")


def plot_losses(log_path: str | os.PathLike, out_png: str | os.PathLike, smoothing: float = 0.9) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    # a run killed between checkpoints repeats the steps after its last save on resume: keep the latest
    records = sorted({r["step"]: r for r in records}.values(), key=lambda r: r["step"])
    terms = [t for t in TERMS if any(t in r for r in records)]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 3), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        steps = [r["step"] for r in records if term in r]
        values = [r[term] for r in records if term in r]
        ema, smooth = values[0] if values else 0.0, []
        for v in values:
            ema = smoothing * ema + (1 - smoothing) * v
            smooth.append(ema)
        ax.plot(steps, values, alpha=0.25, color="tab:blue")
        ax.plot(steps, smooth, color="tab:blue")
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.set_yscale("log" if min(values, default=1) > 0 else "linear")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
