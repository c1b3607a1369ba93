"""The bundled model: the trained demo checkpoint when present, else a seeded tiny model."""

from __future__ import annotations

from pathlib import Path

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
