"""Fixtures of the audit tests: appending events, a private anchor store per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import transaction

from governance.audit.actions import AuditAction
from governance.audit.models import AuditEvent
from governance.audit.services import audit_append


@pytest.fixture(autouse=True)
def _anchors_of_this_test_only(settings, tmp_path: Path) -> None:
    # Anchors outlive the rolled-back database of a test; each test gets its own store.
    settings.AUDIT_ANCHOR_BACKEND = "local"
    settings.AUDIT_ANCHOR_ROOT = tmp_path / "anchors"


@pytest.fixture
def append() -> Callable[..., AuditEvent]:
    """Append one event in its own transaction; keyword arguments override the defaults."""

    def _append(**overrides: object) -> AuditEvent:
        fields: dict[str, object] = {
            "actor": None,
            "action": AuditAction.JOB_CREATED,
            "target_type": "job",
            "target_id": "1",
            "payload": {"caption": "a red square"},
        }
        fields.update(overrides)
        with transaction.atomic():
            return audit_append(**fields)  # type: ignore[arg-type]

    return _append


@pytest.fixture
def chain(append) -> Callable[[int], list[AuditEvent]]:
    """Append ``n`` events with distinct targets and return them."""

    def _chain(n: int) -> list[AuditEvent]:
        return [append(target_id=str(index), payload={"index": index}) for index in range(n)]

    return _chain
