"""The worker's one door into the engine: load a model version once, generate a PNG.

Only worker processes import this module (it imports torch); the web process never does.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from generation.services import PermanentJobError
from governance.registry.models import WEIGHT_FILENAMES, ModelVersion
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
    from generation.engine.errors import CheckpointError
    from generation.engine.pipeline import TextToImagePipeline

    try:
        paths = weights_verify(model_version)
        directory = _checkpoint_view(model_version, paths)
        pipeline = TextToImagePipeline.from_pretrained(directory, device=settings.GENERATION_DEVICE)
    except (WeightsUnavailable, CheckpointError) as exc:
        raise PermanentJobError(f"model version {model_version} cannot be loaded: {exc}") from exc
    with _cache_lock:
        _cache[model_version.pk] = pipeline
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return pipeline


def _checkpoint_view(model_version: ModelVersion, paths: dict[str, Path]) -> Path:
    """Lay out the verified weight files as the engine's checkpoint directory (by symlink)."""
    directory = Path(settings.GENERATION_MODEL_CACHE_DIR) / "versions" / str(model_version.pk)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.json"
    config.write_text(json.dumps(model_version.engine_config, indent=2))
    for role, filename in WEIGHT_FILENAMES.items():
        link = directory / filename
        link.unlink(missing_ok=True)
        link.symlink_to(paths[role.value].resolve())
    return directory


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


def generate_pngs(
    jobs: Sequence[GenerationJob], progress: Callable[[int, int], None]
) -> list[GeneratedImage]:
    """Generate the jobs' images in one engine batch (same model version and settings)."""
    from generation.engine.errors import EngineInputError
    from generation.engine.pipeline import SamplingSettings

    first = jobs[0]
    if any(
        job.model_version_id != first.model_version_id or job.sampling != first.sampling
        for job in jobs
    ):
        raise ValueError("a batch must share one model version and one set of sampling settings")
    pipeline = load_pipeline(first.model_version)
    try:
        sampling = SamplingSettings.from_dict(first.sampling)
        result = pipeline.generate(
            [job.caption for job in jobs], [job.seed for job in jobs], sampling, progress=progress
        )
    except EngineInputError as exc:
        raise PermanentJobError(f"the engine refused the request: {exc}") from exc
    images = []
    for index, job in enumerate(jobs):
        image = result.images[index]
        metadata = {
            "varclip:job": str(job.id),
            "varclip:model_version": str(job.model_version),
            "varclip:record": json.dumps(
                {"caption": job.caption, "seed": job.seed, "sampling": job.sampling},
                sort_keys=True,
            ),
        }
        images.append(
            GeneratedImage(
                png=encode_png(image, metadata),
                width=int(image.shape[1]),
                height=int(image.shape[0]),
                token_count=int(result.token_counts[index]),
                truncated=bool(result.truncated[index]),
            )
        )
    return images
