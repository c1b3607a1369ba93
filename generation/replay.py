"""Replay: regenerate an output from its record and compare the pixels with the stored image.

The record is the output row (model version, caption, seed, sampling settings); the image is
made through the same engine path as the job was (``worker.generate_images``). Worker side
only: this module reaches torch through the worker.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from generation.models import GenerationJob, Output, OutputReplay, ReplayOutcome
from generation.services import PermanentJobError
from generation.storage import StorageError, get_store
from governance.audit.actions import AuditAction
from governance.audit.services import audit_append

log = logging.getLogger(__name__)


def compare_pixels(stored_HW3: Any, replayed_HW3: Any) -> dict[str, Any]:
    """Return identical, max and mean absolute difference and the share of differing pixels."""
    import numpy as np

    stored = np.asarray(stored_HW3, dtype=np.int16)
    replayed = np.asarray(replayed_HW3, dtype=np.int16)
    if stored.shape != replayed.shape:
        return {"identical": False, "shape": f"{stored.shape} vs {replayed.shape}"}
    diff = np.abs(stored - replayed)
    return {
        "identical": not diff.any(),
        "max_abs_diff": int(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "differing_fraction": float(diff.any(axis=-1).mean()),
    }


def output_replay(*, output: Output, triggered_by: AbstractBaseUser | None = None) -> OutputReplay:
    """Regenerate the output from its record, compare, and record the result with an event."""
    import numpy as np
    from PIL import Image

    from generation.worker import generate_images

    output = Output.objects.select_related("model_version__model", "job").get(pk=output.pk)
    found: dict[str, Any] = {}
    detail = ""
    # 1. the stored pixels, unless retention took them
    stored = None
    if output.purged_at is not None:
        detail = "the output's image was purged by retention; nothing to compare with"
    else:
        try:
            with Image.open(io.BytesIO(get_store().get(output.storage_key))) as image:
                stored = np.asarray(image.convert("RGB"))
        except StorageError as exc:
            detail = f"the stored image could not be read: {exc}"
    # 2. the same record through the same engine path
    if stored is not None:
        record = GenerationJob(
            id=output.job_id,
            caption=output.caption,
            seed=output.seed,
            sampling=output.sampling,
            model_version=output.model_version,
        )
        try:
            replayed = generate_images([record]).images[0]
        except PermanentJobError as exc:
            detail = str(exc)
        else:
            found = compare_pixels(stored, replayed)
    # 3. record what was found
    if not found:
        outcome = ReplayOutcome.UNAVAILABLE
    elif found["identical"]:
        outcome = ReplayOutcome.IDENTICAL
    else:
        outcome = ReplayOutcome.DRIFTED
        detail = found.get("shape") or (
            f"max abs diff {found['max_abs_diff']}, mean {found['mean_abs_diff']:.4f}, "
            f"{found['differing_fraction']:.2%} of pixels differ"
        )
    with transaction.atomic():
        replay = OutputReplay.objects.create(
            output=output,
            outcome=outcome,
            max_abs_diff=found.get("max_abs_diff"),
            mean_abs_diff=found.get("mean_abs_diff"),
            differing_fraction=found.get("differing_fraction"),
            detail=detail,
            device=settings.GENERATION_DEVICE,
            triggered_by=triggered_by,
        )
        audit_append(
            actor=triggered_by,
            action=AuditAction.REPLAY_RECORDED,
            target_type="output",
            target_id=output.pk,
            payload={
                "replay": replay.pk,
                "outcome": outcome,
                "max_abs_diff": replay.max_abs_diff,
                "mean_abs_diff": replay.mean_abs_diff,
                "differing_fraction": replay.differing_fraction,
                "device": replay.device,
                "model_version": str(output.model_version),
                "detail": detail[:500],
            },
        )
    return replay


def replay_sample(*, size: int | None = None) -> list[OutputReplay]:
    """Replay a random sample of unpurged outputs and record each one (drift monitoring)."""
    size = settings.REPLAY_SAMPLE_SIZE if size is None else size
    # order_by("?") scans the table; fine for a daily sample, revisit past millions of rows.
    sample = list(Output.objects.filter(purged_at__isnull=True).order_by("?")[:size])
    replays = []
    for output in sample:
        replays.append(output_replay(output=output))
        if replays[-1].outcome == ReplayOutcome.DRIFTED:
            log.warning("replay of output %s drifted: %s", output.pk, replays[-1].detail)
    return replays
