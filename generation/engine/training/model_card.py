"""Model card of a trained VAR-CLIP demo checkpoint (Zhang et al., 2024): data set provenance,
training settings, wall time per stage, caption length in CLIP tokens, evaluation table."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generation.engine.evaluate import markdown_table
from generation.engine.synthetic import (
    COLOURS,
    GENERATOR_VERSION,
    HELD_OUT_PAIRS,
    POSITIONS,
    SHAPES,
    SIZES,
    TEMPLATES,
    ShapesDataset,
)
from generation.engine.tokenizer import default_tokenizer
from generation.engine.training.recipe import Recipe

CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"


def caption_token_stats(captions: list[str]) -> dict[str, float]:
    """Caption length in CLIP tokens including SOT/EOT: mean, median, p95, max."""
    tok = default_tokenizer()
    counts = np.array([tok.count(c) for c in captions])
    return {
        "mean": round(float(counts.mean()), 2),
        "median": float(np.median(counts)),
        "p95": float(np.percentile(counts, 95)),
        "max": int(counts.max()),
    }


def build_card(
    recipe: Recipe,
    data: ShapesDataset,
    stage_seconds: dict[str, float],
    digests: dict[str, str],
    out: Path,
    evaluation: dict[str, Any] | None,
    command: str,
) -> dict[str, Any]:
    """The model card as a JSON-ready dict."""
    files = {
        name: {"sha256": d, "bytes": (out / name).stat().st_size} for name, d in digests.items()
    }
    return {
        "name": f"varclip-shapes-{recipe.name}",
        "description": "VAR-CLIP trained from scratch on synthetic captioned shapes (64x64 px).",
        "dataset": {
            "generator": "generation.engine.synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": data.seed,
            "train_images": len(data),
            "shapes": list(SHAPES),
            "colours": list(COLOURS),
            "sizes": list(SIZES),
            "positions": list(POSITIONS),
            "caption_templates": list(TEMPLATES),
            "held_out_shape_colour_pairs": [list(p) for p in HELD_OUT_PAIRS],
        },
        "caption_tokens": caption_token_stats(data.captions),
        "recipe": recipe.to_dict(),
        "wall_seconds": {k: round(v, 1) for k, v in stage_seconds.items()},
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "command": command,
        "files": files,
        "checkpoint_bytes": sum(f["bytes"] for f in files.values()),
        "evaluation": evaluation,
    }


def refresh_evaluation(model_dir: Path, evaluation: dict[str, Any], command: str) -> bool:
    """Put a re-run evaluation into the checkpoint's model card (if it has one), so the card
    always shows the table for the sampling settings the checkpoint is served with."""
    path = model_dir / CARD_JSON
    if not path.is_file():
        return False
    card = json.loads(path.read_text())
    card["evaluation"] = evaluation
    card["evaluation_command"] = command
    write_card(card, model_dir)
    return True


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's float32 matrix-product speed right now (best of `repeats` n³ products, at
    the current thread count): a rough gauge, recorded beside the wall times, of how fast a
    shared machine was during the run."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return round(2 * n**3 / best / 1e9, 1)


def heap_line(card: dict[str, Any]) -> list[str]:
    """Whether the run kept freed memory for reuse (training/heap.py; older cards don't say)."""
    if "retain_freed_memory" not in card["machine"]:
        return []
    kept = "yes" if card["machine"]["retain_freed_memory"] else "no (not glibc)"
    return [f"- freed heap memory kept for reuse (faster steps, same results): {kept}"]


def precision_line(card: dict[str, Any]) -> str:
    """Which stages ran under bf16 autocast, and why (cards before --precision lack the why)."""
    rec = card["recipe"]
    stage = {True: "bf16 autocast", False: "float32"}
    line = f"stage 1 {stage[rec['vqvae']['bf16']]}, stage 2 {stage[rec['var']['bf16']]}"
    if "precision" in card:
        native = "yes" if card["machine"].get("bf16_native") else "no"
        line += f" (--precision {card['precision']}; native bf16 on this machine: {native})"
    return line


def write_card(card: dict[str, Any], out: Path) -> None:
    """model_card.json plus a readable MODEL_CARD.md."""
    (out / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    ds, tokens, secs = card["dataset"], card["caption_tokens"], card["wall_seconds"]
    lines = [
        f"# {card['name']}",
        "",
        card["description"],
        "",
        "## Data set",
        f"- generator `{ds['generator']}` version `{ds['generator_version']}`, seed {ds['seed']},"
        f" {ds['train_images']} training images",
        f"- {len(ds['shapes'])} shapes ({', '.join(ds['shapes'])}), {len(ds['colours'])} colours"
        f" ({', '.join(ds['colours'])}), sizes {', '.join(ds['sizes'])},"
        f" positions {', '.join(ds['positions'])}; backgrounds from the same palette",
        "- held out of training (shape, colour): "
        + ", ".join(f"{c} {s}" for s, c in ds["held_out_shape_colour_pairs"]),
        f"- caption length in CLIP tokens (with SOT/EOT): mean {tokens['mean']},"
        f" median {tokens['median']}, p95 {tokens['p95']}, max {tokens['max']}",
        "",
        "## Training",
        f"- command: `{card['command']}`",
        "- wall time per stage (s): " + ", ".join(f"{k} {v}" for k, v in secs.items()),
        "- CPU time per stage (s): "
        + ", ".join(f"{k} {v}" for k, v in card.get("cpu_seconds", {}).items()),
        f"- 1-minute load average at start/end: {card['machine'].get('load_average_1min')}"
        " (the machine is shared with other work; CPU time is what this run itself used)",
        f"- threads: {card['machine']['cpu_threads']}, torch {card['machine']['torch']}",
        f"- precision: {precision_line(card)}",
        *heap_line(card),
        "- machine speed, float32 1024³ matmul GFLOP/s at start/end: "
        f"{card['machine'].get('fp32_matmul_gflops', 'not measured')}"
        " (a rough gauge of the machine's speed during the run)",
        "- full recipe: `model_card.json` → `recipe`",
        "",
        "## Files",
        *[
            f"- `{n}` {f['bytes'] / 1e6:.2f} MB sha256 `{f['sha256']}`"
            for n, f in card["files"].items()
        ],
        f"- checkpoint total: {card['checkpoint_bytes'] / 1e6:.2f} MB",
    ]
    if card["evaluation"] is not None:
        ev = card["evaluation"]
        lines += [
            "",
            "## Evaluation",
            f"Oracle attribute accuracy and CLIP score; sampling {json.dumps(ev['sampling'])},"
            f" seeds from {ev['seed']}.",
            *(
                ["", f"Re-evaluated with `{card['evaluation_command']}`."]
                if card.get("evaluation_command")
                else []
            ),
            "",
            markdown_table(ev["rows"]),
        ]
    if card.get("notes"):
        lines += ["", "## Notes", "", card["notes"]]
    (out / CARD_MD).write_text("\n".join(lines) + "\n")
