"""Resumable, seeded training loop shared by the three stages of the VAR-CLIP demo (Zhang et al.,
2024): tqdm progress with loss and ETA, atomic checkpoints, CSV + PNG loss curves."""

# Reproducibility contract: every random draw of step k comes from generators seeded with
# (seed, k) alone, and the learning rate is a pure function of k. A checkpoint then only needs
# the weights, the optimiser moments and k, and a resumed run ends with the very same weights
# as an uninterrupted one (same machine, same thread count).

from __future__ import annotations

import abc
import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from generation.engine.training import curves

STATE_FILE = "state.pt"
CURVE_CSV = "loss.csv"
CURVE_PNG = "loss.png"


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed for (run seed, step, stream)."""
    return int(
        np.random.SeedSequence([seed, step, stream]).generate_state(2, np.uint32).view(np.uint64)[0]
        >> 1
    )


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.05) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine down to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def epoch_batch(seed: int, step: int, batch: int, count: int) -> torch.Tensor:
    """Indices of batch `step`: epochs are seeded permutations, so every item is seen once per
    epoch and the order depends only on (seed, step)."""
    first = step * batch
    out: list[int] = []
    while len(out) < batch:
        epoch, offset = divmod(first + len(out), count)
        perm = np.random.default_rng([seed, epoch, 7]).permutation(count)
        out.extend(perm[offset : offset + batch - len(out)].tolist())
    return torch.tensor(out, dtype=torch.long)


class TrainingStage(abc.ABC):
    """One stage: named trainable modules, an optimiser, and one optimisation step."""

    name: str = "stage"
    optimizer: torch.optim.Optimizer

    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The modules whose weights the checkpoint holds."""

    @abc.abstractmethod
    def train_step(self, step: int, generator: torch.Generator) -> dict[str, float]:
        """Run step `step` drawing randomness only from `generator`; return metrics ("loss")."""

    def extra_state(self) -> dict[str, Any]:
        """Stage-specific state beyond weights and optimiser (e.g. codebook usage)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what extra_state returned."""


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """Steps, seed and checkpoint cadence; stop_after simulates an interruption."""

    steps: int
    seed: int = 0
    checkpoint_every: int = 100
    stop_after: int | None = None
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class LoopResult:
    """How far the run got, whether it finished, its history and wall time (all sessions)."""

    steps_done: int
    finished: bool
    history: list[dict[str, float]]
    seconds: float


def save_state(
    stage: TrainingStage, path: Path, step: int, history: list[dict[str, float]], seconds: float
) -> None:
    """Write the training state atomically (temp file, then rename)."""
    state = {
        "step": step,
        "seconds": seconds,
        "modules": {k: m.state_dict() for k, m in stage.modules().items()},
        "optimizer": stage.optimizer.state_dict(),
        "history": history,
        "extra": stage.extra_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(stage: TrainingStage, path: Path) -> tuple[int, list[dict[str, float]], float]:
    """Restore a state written by save_state; return (step, history, seconds so far)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key, module in stage.modules().items():
        module.load_state_dict(state["modules"][key])
    stage.optimizer.load_state_dict(state["optimizer"])
    stage.load_extra_state(state["extra"])
    return int(state["step"]), list(state["history"]), float(state["seconds"])


def run(stage: TrainingStage, settings: LoopSettings, work_dir: Path) -> LoopResult:
    """Train `stage` to settings.steps, resuming from work_dir/state.pt when present."""
    # 1. Resume if a checkpoint exists.
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path = work_dir / STATE_FILE
    history: list[dict[str, float]] = []
    start, seconds = 0, 0.0
    if state_path.is_file():
        start, history, seconds = load_state(stage, state_path)
    # 2. Train, checkpointing every few steps and at the end.
    t0 = time.perf_counter()
    bar = tqdm(
        total=settings.steps, initial=start, desc=stage.name, disable=not settings.progress,
        unit="step", dynamic_ncols=True,
    )  # fmt: skip
    done = start
    for step in range(start, settings.steps):
        torch.manual_seed(step_seed(settings.seed, step, 1))  # any draw outside the generator
        generator = torch.Generator().manual_seed(step_seed(settings.seed, step))
        metrics = stage.train_step(step, generator)
        history.append({"step": float(step), **metrics})
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
        bar.update()
        done = step + 1
        interrupted = settings.stop_after is not None and done >= settings.stop_after
        if done % settings.checkpoint_every == 0 or done == settings.steps or interrupted:
            total = seconds + time.perf_counter() - t0
            save_state(stage, state_path, done, history, total)
        if interrupted and done < settings.steps:
            bar.close()
            return LoopResult(done, False, history, seconds + time.perf_counter() - t0)
    bar.close()
    # 3. Loss curves.
    total = seconds + time.perf_counter() - t0
    curves.write_csv(work_dir / CURVE_CSV, history)
    curves.plot(work_dir / CURVE_PNG, history, stage.name)
    return LoopResult(done, True, history, total)
