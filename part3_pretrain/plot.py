"""Loss plots read from metrics JSONL files (the plot never needs the training process)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .fileio import save_figure_atomic
from .sink import read_metrics


def _series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in records if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def _draw(ax, records: Sequence[dict], title: str, val_label: str) -> None:
    steps, train = _series(records, "train/loss")
    ax.plot(steps, train, lw=1, label="train loss (per step)")
    vsteps, val = _series(records, "val/loss")
    if vsteps:
        ax.plot(vsteps, val, "o-", lw=2, label=val_label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats / target token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_losses(panels: Sequence[tuple[str | os.PathLike, str, str]], out_png: str | os.PathLike) -> Path:
    """One subplot per ``(metrics_jsonl, title, validation label)``; panels with no data are skipped."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or CI
    import matplotlib.pyplot as plt

    loaded = [(read_metrics(p), t, v) for p, t, v in panels]
    loaded = [x for x in loaded if x[0]]
    fig, axes = plt.subplots(1, max(1, len(loaded)), figsize=(6.5 * max(1, len(loaded)), 4.5), squeeze=False)
    for ax, (records, title, val_label) in zip(axes[0], loaded, strict=False):
        _draw(ax, records, title, val_label)
    fig.tight_layout()
    try:
        return save_figure_atomic(fig, out_png, dpi=110)
    finally:
        plt.close(fig)
