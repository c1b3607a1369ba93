"""Machine checks of every output, stored as data with the checker's version and threshold.

Three checkers: a degenerate image (undecodable, non-finite or near-constant pixels), a
near-duplicate of an output already rejected or flagged (64-bit difference hash), and caption
alignment (CLIP similarity of caption and image) where the model version has a CLIP image
tower. A flagged output is marked in the review queue; approving it needs a reason.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from generation.models import CheckOutcome, Output, OutputCheck, ReviewStatus
from governance.audit.actions import AuditAction
from governance.audit.services import audit_append

log = logging.getLogger(__name__)

DEGENERATE = ("degenerate", "1")
NEAR_DUPLICATE = ("near_duplicate", "1")
CAPTION_ALIGNMENT = ("caption_alignment", "1")

# Standard deviation of the 0-255 pixel values below which an image counts as near-constant.
DEGENERATE_MIN_STD = 2.0
# Hamming distance (of 64 bits) at or below which two difference hashes are near-duplicates.
NEAR_DUPLICATE_MAX_DISTANCE = 6
# Cosine similarity of CLIP image and caption embeddings below which an output is flagged.
ALIGNMENT_MIN_SIMILARITY = 0.2


@dataclass(frozen=True)
class CheckResult:
    """One checker's verdict, before it is stored."""

    checker: str
    version: str
    outcome: str
    threshold: float | None = None
    value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.outcome in (CheckOutcome.FLAGGED, CheckOutcome.ERROR)


class ClipTowers(Protocol):
    """A CLIP model with both towers, giving unit-norm embeddings."""

    def encode_images(self, images_BHW3: Any) -> Any: ...

    def encode_captions(self, captions: Sequence[str]) -> Any: ...


# --- the checkers (pure functions of the image) ------------------------------------------


def check_degenerate(png: bytes, pixels: Any = None) -> CheckResult:
    """Flag a PNG that does not decode, raw pixels that are not finite, or a flat image."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    name, version = DEGENERATE
    if pixels is not None:
        raw = np.asarray(pixels)
        if np.issubdtype(raw.dtype, np.floating) and not np.isfinite(raw).all():
            bad = int((~np.isfinite(raw)).sum())
            return CheckResult(
                name, version, CheckOutcome.FLAGGED, DEGENERATE_MIN_STD, None,
                {"problem": "non_finite", "count": bad},
            )  # fmt: skip
    try:
        with Image.open(io.BytesIO(png)) as image:
            decoded = np.asarray(image.convert("RGB"), dtype=np.float64)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return CheckResult(
            name, version, CheckOutcome.FLAGGED, DEGENERATE_MIN_STD, None,
            {"problem": "undecodable", "error": str(exc)[:200]},
        )  # fmt: skip
    std = float(decoded.std())
    if std < DEGENERATE_MIN_STD:
        return CheckResult(
            name, version, CheckOutcome.FLAGGED, DEGENERATE_MIN_STD, std,
            {"problem": "near_constant"},
        )  # fmt: skip
    return CheckResult(name, version, CheckOutcome.PASSED, DEGENERATE_MIN_STD, std)


def difference_hash(png: bytes) -> str:
    """Return the 64-bit difference hash of an image as 16 hex digits."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        small = image.convert("L").resize((9, 8), Image.Resampling.LANCZOS)
    grey_HW = np.asarray(small, dtype=np.int16)  # 8 rows x 9 columns
    bits = (grey_HW[:, 1:] > grey_HW[:, :-1]).flatten()  # 64 left-to-right gradients
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"


def hamming(first: str, second: str) -> int:
    """Return how many of the 64 bits of two hex hashes differ."""
    return (int(first, 16) ^ int(second, 16)).bit_count()


def check_near_duplicate(phash: str, suspects: Sequence[tuple[str, str]]) -> CheckResult:
    """Flag an image whose hash is within the threshold of a rejected or flagged output's."""
    name, version = NEAR_DUPLICATE
    if not suspects:
        return CheckResult(
            name, version, CheckOutcome.PASSED, NEAR_DUPLICATE_MAX_DISTANCE, None,
            {"hash": phash, "compared": 0},
        )  # fmt: skip
    distance, closest = min((hamming(phash, other), output_id) for output_id, other in suspects)
    flagged = distance <= NEAR_DUPLICATE_MAX_DISTANCE
    outcome = CheckOutcome.FLAGGED if flagged else CheckOutcome.PASSED
    return CheckResult(
        name, version, outcome, NEAR_DUPLICATE_MAX_DISTANCE, float(distance),
        {"hash": phash, "compared": len(suspects), "closest_output": closest},
    )  # fmt: skip


def check_caption_alignment(
    pixels_HW3: Any, caption: str, towers: ClipTowers | None, why_not: str = ""
) -> CheckResult:
    """Flag an image whose CLIP embedding is far from its caption's; n/a without an image tower."""
    import numpy as np

    name, version = CAPTION_ALIGNMENT
    if towers is None:
        return CheckResult(
            name, version, CheckOutcome.NOT_APPLICABLE, ALIGNMENT_MIN_SIMILARITY, None,
            {"reason": why_not or "no CLIP image tower"},
        )  # fmt: skip
    image_D = np.asarray(towers.encode_images(np.asarray(pixels_HW3)[None]))[0]
    text_D = np.asarray(towers.encode_captions([caption]))[0]
    similarity = float(
        np.dot(image_D, text_D) / (np.linalg.norm(image_D) * np.linalg.norm(text_D) + 1e-12)
    )
    flagged = similarity < ALIGNMENT_MIN_SIMILARITY
    outcome = CheckOutcome.FLAGGED if flagged else CheckOutcome.PASSED
    return CheckResult(name, version, outcome, ALIGNMENT_MIN_SIMILARITY, similarity)


def clip_towers_for(model_version: Any) -> tuple[ClipTowers | None, str]:
    """Return the version's CLIP towers for alignment, or None and why there are none."""
    from governance.registry.models import WeightRole

    # VAR-CLIP conditions on CLIP's text tower only; a version registers an image tower as
    # a weight role of its own, and none of the engine's roles is one.
    roles = set(model_version.weights.values_list("role", flat=True))
    image_roles = roles - {role.value for role in WeightRole}
    if not image_roles:
        return None, (
            f"model version {model_version} has a CLIP text tower only "
            f"(weights: {', '.join(sorted(roles))}); no image tower to embed the output with"
        )
    return None, f"model version {model_version} has weights the engine cannot load as CLIP"


# --- running them on an output -----------------------------------------------------------


def flagged_outputs() -> Any:
    """Return the outputs with a flagged check (a queryset)."""
    return Output.objects.filter(
        Exists(OutputCheck.objects.filter(output=OuterRef("pk"), flagged=True))
    )


def _suspects(exclude_id: Any) -> list[tuple[str, str]]:
    flagged = Exists(OutputCheck.objects.filter(output=OuterRef("pk"), flagged=True))
    rows = (
        Output.objects.filter(Q(review_status=ReviewStatus.REJECTED) | flagged)
        .exclude(pk=exclude_id)
        .exclude(perceptual_hash="")
        .values_list("pk", "perceptual_hash")
    )
    return [(str(pk), phash) for pk, phash in rows.iterator(chunk_size=5000)]


def output_checks_run(
    *, output: Output, png: bytes, pixels: Any, towers: ClipTowers | None = None
) -> list[OutputCheck]:
    """Run every checker on a fresh output and store the results with one audit event."""
    results: list[CheckResult] = []
    phash = ""
    results.append(_guarded(DEGENERATE, lambda: check_degenerate(png, pixels)))
    try:
        phash = difference_hash(png)
        results.append(
            _guarded(NEAR_DUPLICATE, lambda: check_near_duplicate(phash, _suspects(output.pk)))
        )
    except Exception as exc:  # an undecodable file is already flagged as degenerate
        results.append(_error(NEAR_DUPLICATE, exc))
    if towers is None:
        towers, why_not = clip_towers_for(output.model_version)
    else:
        why_not = ""
    results.append(
        _guarded(
            CAPTION_ALIGNMENT,
            lambda: check_caption_alignment(pixels, output.caption, towers, why_not),
        )
    )
    with transaction.atomic():
        rows = [
            OutputCheck.objects.create(
                output=output,
                checker=result.checker,
                version=result.version,
                threshold=result.threshold,
                value=result.value,
                outcome=result.outcome,
                flagged=result.flagged,
                detail=result.detail,
            )
            for result in results
        ]
        if phash:
            Output.objects.filter(pk=output.pk).update(perceptual_hash=phash)
        audit_append(
            actor=None,
            action=AuditAction.OUTPUT_CHECK_RECORDED,
            target_type="output",
            target_id=output.pk,
            payload={
                "flagged": any(result.flagged for result in results),
                "checks": [
                    {
                        "checker": r.checker,
                        "version": r.version,
                        "outcome": r.outcome,
                        "threshold": r.threshold,
                        "value": r.value,
                    }
                    for r in results
                ],
            },
        )
    return rows


def _guarded(which: tuple[str, str], run: Any) -> CheckResult:
    try:
        return run()  # type: ignore[no-any-return]
    except Exception as exc:
        return _error(which, exc)


def _error(which: tuple[str, str], exc: Exception) -> CheckResult:
    # A checker that crashed leaves the output unchecked: flag it for a person to look at.
    log.exception("checker %s failed", which[0])
    return CheckResult(
        which[0], which[1], CheckOutcome.ERROR, None, None, {"error": str(exc)[:300]}
    )
