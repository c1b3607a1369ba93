"""The bundled model: the trained demo checkpoint when present, else a seeded tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings

TRAINED_DEMO_DIR = Path(settings.BASE_DIR) / "models" / "demo"


def bundled_checkpoint_dir() -> Path:
    """Return a checkpoint directory for the demo, creating the seeded tiny one if needed."""
    if (TRAINED_DEMO_DIR / "config.json").exists():
        return TRAINED_DEMO_DIR
    target = Path(settings.VAR_DIR) / "models" / "tiny-seed0"
    if not (target / "config.json").exists():
        from generation.engine.config import VarClipConfig
        from generation.engine.pipeline import TextToImagePipeline

        pipeline = TextToImagePipeline.from_config(VarClipConfig.from_preset("tiny"), seed=0)
        pipeline.save_pretrained(target)
    return target


def registry_card(directory: Path) -> dict[str, Any]:
    """The registry's model card for a checkpoint, from the training pipeline's card if any."""
    path = directory / "model_card.json"
    if not path.exists():
        return {
            "intended_use": "Smoke tests and demos of the platform: seeded random weights.",
            "limitations": "Untrained: images are noise-like and follow no caption.",
            "license": "Internal.",
            "training_data_provenance": "None: weights drawn from a fixed seed.",
        }
    card = json.loads(path.read_text())
    dataset = card.get("dataset", {})
    tokens = card.get("caption_tokens", {})
    return {
        "intended_use": f"Demonstration of the platform. {card.get('description', '')}".strip(),
        "limitations": (
            "Trained only on synthetic shapes at 64x64 px; it draws nothing else. "
            + str(card.get("notes", ""))
        ).strip(),
        "license": "Internal; trained here from scratch, no third-party weights or images.",
        "training_data_provenance": (
            f"{dataset.get('generator', 'synthetic')} version "
            f"{dataset.get('generator_version', '?')}, seed {dataset.get('seed', '?')}, "
            f"{dataset.get('train_images', '?')} training images; held-out combinations: "
            f"{json.dumps(dataset.get('held_out_shape_colour_pairs', []))}"
        ),
        "evaluation_results": card.get("evaluation", {}),
        "typical_caption_tokens": round(float(tokens.get("median", 10))),
    }


def registry_sampling_defaults(directory: Path) -> dict[str, Any]:
    """The sampling settings the checkpoint was evaluated with, in the registry's keys."""
    path = directory / "model_card.json"
    if not path.exists():
        return {}
    sampling = json.loads(path.read_text()).get("evaluation", {}).get("sampling", {})
    return {
        key: sampling[key] for key in ("cfg", "top_k", "top_p", "more_smooth") if key in sampling
    }
