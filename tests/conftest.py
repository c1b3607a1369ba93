"""Shared personas, clients and the tiny model version used across the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _flush_past_append_only_triggers() -> Iterator[None]:
    """Let transactional tests end with Django's flush, which TRUNCATEs every table.

    The audit trail's triggers refuse TRUNCATE, so the flush alone runs with the
    pgtrigger triggers ignored (governance/audit/models.py).
    """
    import pgtrigger
    from django.core.management.commands import flush

    original = flush.Command.handle

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        with pgtrigger.ignore(databases=[options["database"]]):
            return original(self, *args, **options)

    flush.Command.handle = handle
    yield
    flush.Command.handle = original


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded tiny-preset checkpoint directory, built once per test session."""
    from generation.engine.config import VarClipConfig
    from generation.engine.pipeline import TextToImagePipeline

    directory = tmp_path_factory.mktemp("tiny-model")
    TextToImagePipeline.from_config(VarClipConfig.from_preset("tiny"), seed=0).save_pretrained(
        directory
    )
    return directory


@pytest.fixture
def model_version(db: None, tiny_checkpoint_dir: Path):  # type: ignore[no-untyped-def]
    """The tiny model registered as ``demo:1`` with alias ``demo@production``."""
    from governance.registry.services import (
        alias_move,
        model_version_register,
        sources_from_directory,
    )

    version = model_version_register(
        model_name=settings.GENERATION_DEFAULT_MODEL,
        sources=sources_from_directory(tiny_checkpoint_dir),
        registered_by=None,
    )
    alias_move(
        model_name=version.model.name,
        alias=settings.GENERATION_DEFAULT_ALIAS,
        version=version.version,
        moved_by=None,
        reason="test setup",
    )
    return version


@pytest.fixture
def requester(db: None):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("rita", password="pw-rita-123456")


@pytest.fixture
def outsider(db: None):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("oscar", password="pw-oscar-123456")


def _persona(username: str, role: str):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    from governance.roles import role_grant

    # No password: hashing one costs ~0.3 s, and tests sign in with force_login.
    user = get_user_model().objects.create_user(username)
    role_grant(user=user, role=role, granted_by=None)
    return user


@pytest.fixture
def reviewer(db: None):  # type: ignore[no-untyped-def]
    return _persona("rory", "reviewer")


@pytest.fixture
def auditor(db: None):  # type: ignore[no-untyped-def]
    return _persona("audrey", "auditor")


@pytest.fixture
def model_admin(db: None):  # type: ignore[no-untyped-def]
    return _persona("mia", "model_admin")


@pytest.fixture
def api(requester) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(requester)
    return client


@pytest.fixture
def s3_bucket() -> Iterator[str]:
    """The S3 bucket of this run, emptied after the test."""
    from generation.storage import get_store

    if settings.OBJECT_STORE_BACKEND != "s3":
        pytest.fail("needs the S3 server: run the suite with scripts/run_tests.sh (make test)")
    store = get_store()
    yield settings.S3_BUCKET
    for key in list(store.iter_keys("")):
        store.delete(key)
