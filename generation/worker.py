"""The worker's one door into the engine: load a model version once, generate a PNG.

Only worker processes import this module (it imports torch); the web process never does.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

from generation.services import PermanentJobError
from governance.registry.models import ModelVersion
from governance.registry.services import WeightsUnavailable, weights_verify

if TYPE_CHECKING:
    from generation.engine.pipeline import TextToImagePipeline
    from generation.models import GenerationJob

_CACHE_SIZE = 2
_cache: OrderedDict[int, TextToImagePipeline] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class GeneratedImage:
    """A PNG ready to store, with what the engine reported about the caption."""

    png: bytes
    width: int
    height: int
    token_count: int
    truncated: bool


def load_pipeline(model_version: ModelVersion) -> TextToImagePipeline:
    """Return the engine pipeline for a version, verifying weight hashes on first load."""
    with _cache_lock:
        if model_version.pk in _cache:
            _cache.move_to_end(model_version.pk)
            return _cache[model_version.pk]
    import torch

    from generation.engine.checkpoint import load_pipeline_files
    from generation.engine.errors import CheckpointError

    try:
        paths = weights_verify(model_version)
        pipeline = load_pipeline_files(
            config=model_version.engine_config,
            vqvae_path=paths["vqvae"],
            transformer_path=paths["transformer"],
            text_encoder_path=paths["text_encoder"],
            device=settings.GENERATION_DEVICE,
            dtype=torch.float32,
        )
    except (WeightsUnavailable, CheckpointError) as exc:
        raise PermanentJobError(f"model version {model_version} cannot be loaded: {exc}") from exc
    with _cache_lock:
        _cache[model_version.pk] = pipeline
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return pipeline


def clear_pipeline_cache() -> None:
    """Forget every loaded model (tests use this after replacing weight files)."""
    with _cache_lock:
        _cache.clear()


def encode_png(image_HW3: object, metadata: dict[str, str]) -> bytes:
    """Encode an RGB uint8 array as PNG with text metadata chunks."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    Image.fromarray(image_HW3, mode="RGB").save(buffer, format="PNG", pnginfo=info)  # type: ignore[arg-type]
    return buffer.getvalue()


def generate_png(job: GenerationJob, progress: Callable[[int, int], None]) -> GeneratedImage:
    """Generate the job's image through the engine and return it as PNG bytes."""
    from generation.engine.errors import EngineInputError
    from generation.engine.pipeline import SamplingSettings

    pipeline = load_pipeline(job.model_version)
    try:
        sampling = SamplingSettings.from_dict(job.sampling)
        result = pipeline.generate([job.caption], [job.seed], sampling, progress=progress)
    except EngineInputError as exc:
        raise PermanentJobError(f"the engine refused the request: {exc}") from exc
    image = result.images[0]
    metadata = {
        "varclip:job": str(job.id),
        "varclip:model_version": str(job.model_version),
        "varclip:record": json.dumps(
            {"caption": job.caption, "seed": job.seed, "sampling": job.sampling}, sort_keys=True
        ),
    }
    return GeneratedImage(
        png=encode_png(image, metadata),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        token_count=int(result.token_counts[0]),
        truncated=bool(result.truncated[0]),
    )
