"""Provenance in the file: a signed record and an AI marker; verify_image tells genuine files."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image, PngImagePlugin

from generation import worker
from generation.models import Output
from generation.provenance import (
    RECORD_CHUNK,
    TRAINED_ALGORITHMIC_MEDIA,
    XMP_CHUNK,
    image_verify,
    output_id_for,
    provenance_read,
)
from generation.services import job_create, job_execute
from generation.storage import get_store

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stored(requester, model_version, s3_bucket):
    """A generated output and the bytes of its stored PNG."""
    worker.clear_pipeline_cache()
    with mock.patch("generation.services.dispatch_job"):
        job = job_create(created_by=requester, caption="a red square", seed=3)
    job_execute(job_id=job.id, worker="test", max_batch=1)
    output = Output.objects.get(job=job)
    return output, get_store().get(output.storage_key)


def _reencode(data, change=None, drop=(), edit_record=None):
    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image.convert("RGB")).copy()
        chunks = dict(image.text)
    if change:
        change(pixels)
    if edit_record:
        envelope = json.loads(chunks[RECORD_CHUNK])
        edit_record(envelope["record"])
        chunks[RECORD_CHUNK] = json.dumps(envelope)
    info = PngImagePlugin.PngInfo()
    for key, value in reversed(list(chunks.items())):  # another chunk order
        if key not in drop:
            info.add_itxt(key, value)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info, compress_level=9)
    return buffer.getvalue()


def test_the_stored_png_carries_a_signed_record_naming_its_output_and_an_ai_marker(
    stored, model_version
):
    output, data = stored
    found = provenance_read(data)
    assert (found.signature_valid, found.pixels_match) == (True, True)
    assert output.pk == output_id_for(output.job_id)
    record = found.record
    assert record["output"] == str(output.pk)
    assert (record["model_version"], record["seed"]) == ("demo:1", 3)
    assert record["sampling"] == output.sampling
    assert record["digital_source_type"] == TRAINED_ALGORITHMIC_MEDIA
    assert record["template_version"] is None  # a free-form job, not a template request
    assert len(record["weights_sha256"]) == 64
    with Image.open(io.BytesIO(data)) as image:
        assert "Iptc4xmpExt:DigitalSourceType" in image.text[XMP_CHUNK]
    assert found.pixels_sha256 == output.pixels_sha256


def test_a_genuine_file_verifies_with_its_output_and_review_status(stored, tmp_path, capsys):
    output, data = stored
    path = tmp_path / "genuine.png"
    path.write_bytes(data)
    call_command("verify_image", str(path))
    printed = capsys.readouterr().out
    assert "from this platform:  yes" in printed
    assert "unchanged:           yes" in printed
    assert f"output:              {output.pk}" in printed
    assert "review status:       pending" in printed


def test_a_re_encoded_file_with_the_same_pixels_still_verifies(stored):
    _output, data = stored
    copy = _reencode(data)
    assert copy != data
    verdict = image_verify(data=copy)
    assert (verdict.from_platform, verdict.unchanged, verdict.byte_identical) == (True, True, False)


def test_a_changed_pixel_is_caught(stored, tmp_path, capsys):
    _output, data = stored

    def touch(pixels):
        pixels[0, 0, 0] ^= 1

    path = tmp_path / "tampered.png"
    path.write_bytes(_reencode(data, change=touch))
    with pytest.raises(SystemExit) as exited:
        call_command("verify_image", str(path))
    assert exited.value.code == 1
    printed = capsys.readouterr().out
    assert "from this platform:  yes" in printed
    assert "unchanged:           no" in printed
    assert "the pixels differ from the signed pixel hash" in printed


def test_an_edited_record_breaks_the_signature(stored):
    _output, data = stored

    def claim_other_seed(record):
        record["seed"] = 4

    verdict = image_verify(data=_reencode(data, edit_record=claim_other_seed))
    assert (verdict.from_platform, verdict.unchanged) == (False, False)
    assert "record was altered or forged" in verdict.detail


def test_stripped_metadata_is_still_recognised_by_its_pixels(stored):
    output, data = stored
    verdict = image_verify(data=_reencode(data, drop=(RECORD_CHUNK, XMP_CHUNK)))
    assert (verdict.from_platform, verdict.unchanged) == (True, True)
    assert verdict.output_id == str(output.pk)
    assert "no provenance record in the file" in verdict.detail


def test_a_foreign_image_and_a_non_image_are_not_ours(db, tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, format="PNG")
    assert image_verify(data=buffer.getvalue()).from_platform is False
    verdict = image_verify(data=b"not an image at all")
    assert (verdict.from_platform, verdict.file.decodable) == (False, False)


def test_a_file_signed_with_another_key_is_not_ours(stored, settings):
    _output, data = stored
    settings.PROVENANCE_SIGNING_KEY = "another-server-key-of-at-least-32-characters"
    verdict = image_verify(data=data)
    assert verdict.from_platform is False
    assert "signed with another key" in verdict.detail


def test_production_without_a_provenance_key_fails_loudly(tmp_path):
    env = {
        "PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(tmp_path), "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "x" * 50,
        "AUDIT_HMAC_KEY": "k" * 40,
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "PROVENANCE_SIGNING_KEY is required" in result.stderr
