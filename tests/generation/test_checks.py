"""Machine checks of outputs, stored with checker version and threshold."""

import io
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from generation import worker
from generation.checks import (
    ALIGNMENT_MIN_SIMILARITY,
    DEGENERATE_MIN_STD,
    check_caption_alignment,
    check_degenerate,
    check_near_duplicate,
    difference_hash,
    hamming,
)
from generation.models import CheckOutcome, JobStatus, Output
from generation.services import job_create, job_execute
from governance.audit.models import AuditEvent


def _png(pixels_HW3):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels_HW3, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


NOISE = np.random.default_rng(0).integers(0, 256, (32, 32, 3))
FLAT = np.full((32, 32, 3), 128)


def test_a_flat_image_is_flagged_as_near_constant_and_noise_passes():
    flat = check_degenerate(_png(FLAT))
    assert (flat.outcome, flat.detail["problem"], flat.value) == ("flagged", "near_constant", 0.0)
    assert flat.threshold == DEGENERATE_MIN_STD
    assert check_degenerate(_png(NOISE)).outcome == CheckOutcome.PASSED


def test_an_undecodable_file_and_non_finite_pixels_are_flagged():
    broken = check_degenerate(b"\x89PNG\r\n\x1a\n garbage")
    assert (broken.outcome, broken.detail["problem"]) == ("flagged", "undecodable")
    nan = np.full((4, 4, 3), np.nan)
    non_finite = check_degenerate(_png(NOISE), pixels=nan)
    assert (non_finite.detail["problem"], non_finite.detail["count"]) == ("non_finite", 48)


def test_the_difference_hash_matches_identical_images_and_separates_different_ones():
    same = difference_hash(_png(NOISE))
    assert hamming(same, difference_hash(_png(NOISE))) == 0
    gradient = np.tile(np.arange(32)[None, :, None] * 8, (32, 1, 3))
    assert hamming(same, difference_hash(_png(gradient))) > 6


def test_near_duplicates_of_rejected_outputs_are_flagged_with_the_closest_one():
    mine = difference_hash(_png(NOISE))
    found = check_near_duplicate(mine, [("a", "0" * 16), ("b", mine)])
    assert (found.outcome, found.value, found.detail["closest_output"]) == ("flagged", 0.0, "b")
    far = check_near_duplicate(mine, [("a", f"{int(mine, 16) ^ 0xFFFF:016x}")])
    assert (far.outcome, far.value) == ("passed", 16.0)


class ColourTowers:
    """A stand-in CLIP: images embed as their mean colour, captions by their colour word."""

    def encode_images(self, images_BHW3):
        return images_BHW3.reshape(len(images_BHW3), -1, 3).mean(axis=1)

    def encode_captions(self, captions):
        words = {"red": [1.0, 0.0, 0.0], "blue": [0.0, 0.0, 1.0]}
        return np.array([next(words[w] for w in c.split() if w in words) for c in captions])


def test_caption_alignment_compares_clip_embeddings_when_there_is_an_image_tower():
    red = np.zeros((8, 8, 3))
    red[..., 0] = 255
    good = check_caption_alignment(red, "a red square", ColourTowers())
    bad = check_caption_alignment(red, "a blue square", ColourTowers())
    assert (good.outcome, round(good.value, 3)) == ("passed", 1.0)
    assert (bad.outcome, bad.value, bad.threshold) == ("flagged", 0.0, ALIGNMENT_MIN_SIMILARITY)
    na = check_caption_alignment(red, "a red square", None, "no image tower")
    assert (na.outcome, na.detail) == ("not_applicable", {"reason": "no image tower"})


@pytest.mark.django_db
def test_every_output_gets_its_checks_recorded_with_version_threshold_and_an_event(
    requester, model_version, s3_bucket
):
    worker.clear_pipeline_cache()
    with mock.patch("generation.services.dispatch_job"):
        job = job_create(created_by=requester, caption="a red square", seed=1)
    job_execute(job_id=job.id, worker="test", max_batch=1)
    output = Output.objects.get(job=job)
    checks = {check.checker: check for check in output.checks.all()}
    assert set(checks) == {"degenerate", "near_duplicate", "caption_alignment"}
    assert all(check.version == "1" for check in checks.values())
    assert checks["degenerate"].threshold == DEGENERATE_MIN_STD
    assert checks["degenerate"].value > DEGENERATE_MIN_STD
    alignment = checks["caption_alignment"]
    assert alignment.outcome == CheckOutcome.NOT_APPLICABLE
    assert "has a CLIP text tower only" in alignment.detail["reason"]
    assert len(output.perceptual_hash) == 16
    event = AuditEvent.objects.get(action="output.check_recorded", target_id=str(output.pk))
    assert {c["checker"] for c in event.payload["checks"]} == set(checks)


@pytest.mark.django_db
def test_a_crashing_checker_flags_the_output_and_the_job_still_succeeds(
    requester, model_version, s3_bucket
):
    worker.clear_pipeline_cache()
    with mock.patch("generation.services.dispatch_job"):
        job = job_create(created_by=requester, caption="a red square", seed=1)
    with mock.patch("generation.checks.check_degenerate", side_effect=RuntimeError("boom")):
        assert job_execute(job_id=job.id, worker="test", max_batch=1) == JobStatus.SUCCEEDED
    check = Output.objects.get(job=job).checks.get(checker="degenerate")
    assert (check.outcome, check.flagged, check.detail) == ("error", True, {"error": "boom"})
