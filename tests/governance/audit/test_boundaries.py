"""The audit app stands alone, and the platform wires it in: middleware, beat, settings."""

import ast
from pathlib import Path

import pytest

from config.celery import app as celery_app

AUDIT = Path(__file__).resolve().parents[3] / "governance" / "audit"


def test_audit_imports_no_other_app_of_the_project():
    offenders = []
    for path in sorted(AUDIT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                ours = name == "governance.audit" or name.startswith("governance.audit.")
                if name.split(".")[0] in ("generation", "governance") and not ours:
                    offenders.append(f"{path.relative_to(AUDIT)} imports {name}")
    assert offenders == []


@pytest.mark.django_db
def test_every_response_carries_its_request_id(client):
    response = client.get("/no-such-page/", HTTP_X_REQUEST_ID="trace-7")
    assert response["X-Request-ID"] == "trace-7"
    assert len(client.get("/no-such-page/")["X-Request-ID"]) == 32


def test_celery_beat_anchors_the_chain_on_the_configured_interval(settings):
    entry = celery_app.conf.beat_schedule["anchor-audit-chain"]
    celery_app.loader.import_default_modules()

    assert entry["task"] == "governance.audit.tasks.anchor_audit_chain"
    assert entry["schedule"] == float(settings.AUDIT_ANCHOR_INTERVAL)
    assert entry["task"] in celery_app.tasks
