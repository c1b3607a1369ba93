"""Registering model versions: hashes, config, model card, and no partial rows on bad input."""

import json
import shutil

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction

from governance.errors import RoleRequired
from governance.registry.models import ModelVersion, RegisteredModel, WeightFile
from governance.registry.services import (
    RegistryError,
    WeightSource,
    WeightsUnavailable,
    file_sha256,
    model_version_register,
    sources_from_directory,
    weights_verify,
)

pytestmark = pytest.mark.django_db

CARD = {
    "intended_use": "marketing images of simple shapes",
    "limitations": "64x64 pixels; shapes and colours only",
    "license": "internal",
    "training_data_provenance": "synthetic shapes-v1, generated in-house",
    "evaluation_results": {"oracle_accuracy": 0.93},
    "typical_caption_tokens": 10,
}


@pytest.fixture
def checkpoint(tiny_checkpoint_dir, tmp_path):
    """A private copy of the tiny checkpoint that a test may damage."""
    target = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint_dir, target)
    return target


def register(directory, **kwargs):
    return model_version_register(
        model_name=kwargs.pop("model_name", "shapes"),
        sources=sources_from_directory(directory),
        registered_by=kwargs.pop("registered_by", None),
        **kwargs,
    )


def test_registration_records_each_weight_files_sha256_card_and_an_audit_event(
    checkpoint, registrant, audit_trail
):
    version = register(checkpoint, model_card=CARD, registered_by=registrant)
    weights = {w.role: w for w in version.weights.all()}
    assert sorted(weights) == ["text_encoder", "transformer", "vqvae"]
    digest, size = file_sha256(checkpoint / "transformer.safetensors")
    assert (weights["transformer"].sha256, weights["transformer"].size_bytes) == (digest, size)
    assert version.model_card == CARD and str(version) == "shapes:1"
    (event,) = audit_trail("registry.version_registered", version.pk)
    assert event[0] == "reggie"
    assert event[1]["weights"] == {role: w.sha256 for role, w in weights.items()}


def test_the_model_card_beside_the_weights_is_read_when_none_is_given(checkpoint):
    (checkpoint / "model_card.json").write_text(json.dumps(CARD))
    assert register(checkpoint).model_card == CARD


def _no_rows():
    return not (
        RegisteredModel.objects.exists()
        or ModelVersion.objects.exists()
        or WeightFile.objects.exists()
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: (d / "config.json").write_text(
                json.dumps({**json.loads((d / "config.json").read_text()), "dropout": 0.1})
            ),
            "invalid engine config: unknown keys in VarClipConfig: dropout",
        ),
        (lambda d: (d / "config.json").unlink(), "no engine config given and no config.json"),
        (lambda d: (d / "config.json").write_text("{"), "config.json is not valid JSON"),
        (
            lambda d: (d / "model_card.json").write_text(json.dumps({"author": "me"})),
            "unknown model card keys: author",
        ),
        (
            lambda d: (d / "model_card.json").write_text(
                json.dumps({"typical_caption_tokens": "ten"})
            ),
            "typical_caption_tokens must be a whole number",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_leaves_no_rows(checkpoint, damage, message):
    damage(checkpoint)
    with pytest.raises(RegistryError, match=message):
        register(checkpoint)
    assert _no_rows()


def test_an_unreadable_weight_file_is_a_clear_error(checkpoint):
    sources = [
        WeightSource(role=s.role, uri=str(checkpoint) if s.role == "transformer" else s.uri)
        for s in sources_from_directory(checkpoint)
    ]
    with pytest.raises(
        RegistryError, match=r"cannot read transformer weights at .*: Is a directory"
    ):
        model_version_register(model_name="shapes", sources=sources, registered_by=None)
    with pytest.raises(RegistryError, match="need exactly one weight file per role"):
        model_version_register(model_name="shapes", sources=sources[:2], registered_by=None)
    assert _no_rows()


def test_only_a_model_admin_registers_a_version(checkpoint, outsider):
    with pytest.raises(RoleRequired, match="registering a model version needs the model_admin"):
        register(checkpoint, registered_by=outsider)
    assert _no_rows()


def test_a_hash_that_differs_from_the_expected_one_is_refused(checkpoint):
    with pytest.raises(RegistryError, match="hash mismatch for vqvae weights") as caught:
        register(checkpoint, expected_sha256={"vqvae": "0" * 64})
    assert file_sha256(checkpoint / "vqvae.safetensors")[0] in str(caught.value)
    assert _no_rows()


def test_a_duplicate_version_number_is_refused_and_leaves_the_first_untouched(checkpoint):
    first = register(checkpoint, version=3)
    with pytest.raises(RegistryError, match="shapes:3 is already registered"):
        register(checkpoint, version=3)
    assert list(ModelVersion.objects.values_list("pk", flat=True)) == [first.pk]
    assert WeightFile.objects.count() == 3


def test_the_worker_side_check_refuses_weights_changed_after_registration(checkpoint):
    version = register(checkpoint)
    assert set(weights_verify(version)) == {"vqvae", "transformer", "text_encoder"}
    with (checkpoint / "transformer.safetensors").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(WeightsUnavailable, match="transformer weights of shapes:1 fail their hash"):
        weights_verify(version)


def test_a_registered_version_cannot_be_changed_even_bypassing_the_model(checkpoint):
    version = register(checkpoint)
    with pytest.raises(DatabaseError), transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(model_card={"license": "MIT"})
    with pytest.raises(DatabaseError), transaction.atomic():
        WeightFile.objects.filter(model_version=version).update(sha256="0" * 64)
    with pytest.raises(DatabaseError), transaction.atomic():
        WeightFile.objects.filter(model_version=version).delete()


def test_the_command_registers_from_s3_uris(checkpoint, s3_bucket, capsys):
    for path in checkpoint.iterdir():
        _upload(f"models/shapes/{path.name}", path.read_bytes())
    digest = file_sha256(checkpoint / "vqvae.safetensors")[0]
    call_command(
        "register_model_version",
        "--name",
        "shapes",
        "--dir",
        f"s3://{s3_bucket}/models/shapes",
        "--sha256",
        f"vqvae={digest}",
    )
    version = ModelVersion.objects.get()
    vqvae = version.weights.get(role="vqvae")
    assert (vqvae.uri, vqvae.sha256) == (
        f"s3://{s3_bucket}/models/shapes/vqvae.safetensors",
        digest,
    )
    paths = weights_verify(version)
    assert set(paths) == {"vqvae", "transformer", "text_encoder"}
    # A damaged cached copy is fetched again; a changed object in the store is refused.
    paths["vqvae"].write_bytes(b"damaged")
    assert file_sha256(weights_verify(version)["vqvae"])[0] == digest
    _replace("models/shapes/vqvae.safetensors", b"replaced")
    paths["vqvae"].write_bytes(b"damaged")
    with pytest.raises(WeightsUnavailable, match="vqvae weights of shapes:1 fail their hash"):
        weights_verify(version)


def test_the_command_reports_a_missing_s3_object_clearly(checkpoint, s3_bucket):
    prefix = f"s3://{s3_bucket}/partial"
    with pytest.raises(CommandError, match=f"no config.json beside {prefix}/"):
        call_command("register_model_version", "--name", "shapes", "--dir", prefix)
    _upload("partial/config.json", (checkpoint / "config.json").read_bytes())
    with pytest.raises(CommandError, match="cannot read text_encoder weights: cannot fetch"):
        call_command("register_model_version", "--name", "shapes", "--dir", prefix)
    assert _no_rows()


def _upload(key, data):
    from generation.storage import get_store, sha256_hex

    get_store().put(key, data, sha256_hex(data), "application/octet-stream")


def _replace(key, data):
    from generation.storage import get_store

    get_store().delete(key)  # the store never overwrites: replacing takes a delete first
    _upload(key, data)


def test_show_model_card_prints_every_card_field_and_the_weight_hashes(checkpoint, capsys):
    version = register(checkpoint, model_card={"license": "internal"})
    call_command("show_model_card", "shapes:1")
    out = capsys.readouterr().out
    assert "license: internal" in out
    assert "typical_caption_tokens: (not stated)" in out
    for weight in version.weights.all():
        assert weight.sha256 in out
