"""Loss curves of a training stage: one CSV row per step and a PNG plot (matplotlib, Agg).
Written next to the stage's checkpoint so an interrupted run still leaves its history."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the CLI runs on servers and in CI
import matplotlib.pyplot as plt


def write_csv(path: Path, rows: Sequence[dict[str, float]]) -> None:
    """Write rows (dicts with the same keys, "step" first) as CSV."""
    if not rows:
        return
    keys = list(rows[0])
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a CSV written by write_csv, as floats."""
    with open(path, newline="") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average; the first points average what exists so far."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot(path: Path, rows: Sequence[dict[str, float]], title: str) -> None:
    """One panel per metric (raw, faint; smoothed, solid) against the step."""
    if not rows:
        return
    metrics = [k for k in rows[0] if k not in ("step", "lr")]
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), squeeze=False)
    window = max(1, len(rows) // 50)
    for ax, key in zip(axes[0], metrics, strict=True):
        values = [r[key] for r in rows]
        ax.plot(steps, values, alpha=0.3, linewidth=0.8)
        ax.plot(steps, smooth(values, window), linewidth=1.5)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
