"""C2PA Content Credentials, when a certificate is configured: signed, trusted, tamper-evident."""

import io
from unittest import mock

import pytest
from django.core.management import call_command
from PIL import Image

from generation import worker
from generation.content_credentials import c2pa_read
from generation.models import Output
from generation.provenance import TRAINED_ALGORITHMIC_MEDIA, image_verify
from generation.services import job_create, job_execute
from generation.storage import get_store

pytestmark = pytest.mark.django_db


@pytest.fixture
def c2pa_settings(settings, tmp_path, capsys):
    call_command("make_c2pa_certificate", str(tmp_path / "c2pa"))
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    settings.PROVENANCE_C2PA_CERT = lines["PROVENANCE_C2PA_CERT"]
    settings.PROVENANCE_C2PA_KEY = lines["PROVENANCE_C2PA_KEY"]
    return settings


@pytest.fixture
def signed_png(c2pa_settings, requester, model_version, s3_bucket):
    worker.clear_pipeline_cache()
    with mock.patch("generation.services.dispatch_job"):
        job = job_create(created_by=requester, caption="a green cross", seed=8)
    job_execute(job_id=job.id, worker="test", max_batch=1)
    output = Output.objects.get(job=job)
    return output, get_store().get(output.storage_key)


def test_an_output_carries_a_c2pa_manifest_trusted_by_the_platform(signed_png, tmp_path, capsys):
    output, data = signed_png
    verdict = c2pa_read(data)
    assert (verdict.present, verdict.state, verdict.failures) == (True, "Trusted", [])
    assert verdict.ai_generated
    assert verdict.record["output"] == str(output.pk)
    assert verdict.record["digital_source_type"] == TRAINED_ALGORITHMIC_MEDIA
    path = tmp_path / "signed.png"
    path.write_bytes(data)
    call_command("verify_image", str(path))
    printed = capsys.readouterr().out
    assert "C2PA manifest:       valid, signed by this platform's certificate" in printed
    assert "unchanged:           yes" in printed


def test_a_changed_byte_invalidates_the_manifest(signed_png):
    _output, data = signed_png
    tampered = bytearray(data)
    tampered[tampered.index(b"IDAT") + 6] ^= 0x01
    verdict = c2pa_read(bytes(tampered))
    assert verdict.state == "Invalid"
    assert "assertion.dataHash.mismatch" in verdict.failures


def test_re_encoding_drops_the_manifest_but_the_pixel_signature_still_holds(signed_png):
    _output, data = signed_png
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", pnginfo=_text_only(image))
    verdict = image_verify(data=buffer.getvalue())
    assert verdict.content_credentials.present is False
    assert (verdict.from_platform, verdict.unchanged) == (True, True)


def _text_only(image):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in image.text.items():
        info.add_itxt(key, value)
    return info


def test_another_platforms_certificate_is_valid_but_not_trusted(signed_png, settings, tmp_path):
    from generation.content_credentials import c2pa_certificate_create

    _output, data = signed_png
    other_chain, other_key = c2pa_certificate_create(tmp_path / "other")
    settings.PROVENANCE_C2PA_CERT, settings.PROVENANCE_C2PA_KEY = str(other_chain), str(other_key)
    assert c2pa_read(data).describe() == "valid, but the signer is not one this platform trusts"


def test_setting_only_half_of_the_c2pa_pair_fails_at_start_up(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        "PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(tmp_path), "PROVENANCE_C2PA_CERT": "/x/chain.pem",
    }  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "PROVENANCE_C2PA_CERT and PROVENANCE_C2PA_KEY" in result.stderr
