"""The worker's one door into the engine: load a model version once, generate a PNG.

Only worker processes import this module (it imports torch); the web process never does.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.conf import settings

from generation.content_credentials import c2pa_enabled, c2pa_sign
from generation.provenance import (
    output_id_for,
    png_with_provenance,
    provenance_record,
    weights_digest,
)
from generation.services import PermanentJobError
from governance.registry.models import WEIGHT_FILENAMES, ModelVersion, WeightFile
from governance.registry.services import WeightsUnavailable, weights_verify

if TYPE_CHECKING:
    from generation.engine.pipeline import GenerationResult, TextToImagePipeline
    from generation.models import GenerationJob

_CACHE_SIZE = 2
_cache: OrderedDict[int, TextToImagePipeline] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class GeneratedImage:
    """A signed PNG ready to store, with what the engine reported about the caption."""

    png: bytes
    width: int
    height: int
    token_count: int
    truncated: bool
    output_id: UUID
    pixels_sha256: str
    pixels: Any = field(repr=False, compare=False)  # H x W x 3 uint8, for the output checks


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


def generate_images(
    jobs: Sequence[GenerationJob], progress: Callable[[int, int], None] | None = None
) -> GenerationResult:
    """Run the jobs through the engine in one batch (same model version and settings)."""
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
    return result


def generate_pngs(
    jobs: Sequence[GenerationJob], progress: Callable[[int, int], None]
) -> list[GeneratedImage]:
    """Generate the jobs' images in one engine batch, each PNG carrying its signed record."""
    result = generate_images(jobs, progress)
    weights = weights_digest(
        dict(
            WeightFile.objects.filter(model_version=jobs[0].model_version).values_list(
                "role", "sha256"
            )
        )
    )
    templates = _template_versions(jobs)
    images = []
    for index, job in enumerate(jobs):
        image = result.images[index]
        output_id = output_id_for(job.id)
        record = provenance_record(
            output_id=output_id,
            job_id=job.id,
            request_id=job.request_id,
            template_version=templates.get(job.request_id) if job.request_id else None,
            model_version=str(job.model_version),
            weights_sha256=weights,
            seed=job.seed,
            sampling=job.sampling,
        )
        png, pixels_digest = png_with_provenance(image, record)
        if c2pa_enabled():
            png = c2pa_sign(png, record)
        images.append(
            GeneratedImage(
                png=png,
                width=int(image.shape[1]),
                height=int(image.shape[0]),
                token_count=int(result.token_counts[index]),
                truncated=bool(result.truncated[index]),
                output_id=output_id,
                pixels_sha256=pixels_digest,
                pixels=image,
            )
        )
    return images


def _template_versions(jobs: Sequence[GenerationJob]) -> dict[Any, str]:
    """Map each request id of the batch to its template version's name, e.g. ``shapes:2``."""
    from governance.approvals.models import GenerationRequest

    request_ids = {job.request_id for job in jobs if job.request_id}
    if not request_ids:
        return {}
    rows = GenerationRequest.objects.filter(pk__in=request_ids).values_list(
        "pk", "template_version__template__name", "template_version__number"
    )
    return {pk: f"{name}:{number}" for pk, name, number in rows}
