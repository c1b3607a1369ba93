"""Whole-platform journeys: API → RabbitMQ → Celery worker → engine → S3 → PostgreSQL,
and the embedded default on SQLite with local files and the in-process worker."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from generation.models import GenerationJob, JobStatus
from governance.approvals.services import review_decide
from tests.workers import CeleryWorker, declare_and_purge_queue

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    """A real Celery worker process consuming the gpu queue of RabbitMQ."""
    declare_and_purge_queue()
    worker = CeleryWorker(tmp_path, "e2e")
    worker.start()
    yield worker
    worker.stop()
    connection.close()


def _wait_for(job_id, timeout: float = 180.0) -> GenerationJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = GenerationJob.objects.get(pk=job_id)
        if job.is_terminal:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s")


@pytest.mark.services
def test_api_job_runs_on_the_celery_worker_and_lands_in_s3_and_postgres(
    celery_worker, api, model_version, s3_bucket, tmp_path, reviewer
):
    response = api.post(
        "/api/v1/jobs/", {"caption": "a small blue star on the left", "seed": 42}, format="json"
    )
    assert response.status_code == 201, response.content
    job = _wait_for(response.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, (
        f"{job.failure_reason}\n{celery_worker.logs()[-3000:]}"
    )
    assert job.worker.startswith("e2e-")
    detail = api.get(f"/api/v1/jobs/{job.id}/").json()
    assert detail["progress"] == 1.0 and detail["scales_done"] == detail["scales_total"] == 4
    output = api.get(f"/api/v1/outputs/{detail['output']}/").json()
    # Only approved outputs are released; a reviewer other than the requester approves it.
    assert api.get(output["download_url"]).status_code == 403
    review_decide(output=job.output, reviewer=reviewer, decision="approved")
    redirect = api.get(output["download_url"])
    assert redirect.status_code == 302
    with urllib.request.urlopen(redirect["Location"], timeout=10) as fetched:
        data = fetched.read()
    assert hashlib.sha256(data).hexdigest() == output["sha256"] == job.output.sha256
    assert job.output.size_bytes == len(data)


def test_embedded_default_demo_generates_an_image_with_its_record(tmp_path):
    tmp_path = tmp_path / "fresh-var"  # does not exist yet, as on a fresh clone
    env = {"PATH": os.environ["PATH"], "HF_HUB_OFFLINE": "1", "VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "demo", "--seed", "5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    image_path = Path(re.search(r"image:\s+(\S+)", result.stdout).group(1))
    record = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])
    data = image_path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert image_path.is_relative_to(tmp_path / "objects")
    assert (tmp_path / "db.sqlite3").exists()
    assert record["seed"] == 5 and record["model_version"] == "demo:1"
    assert "demo-reviewer / demo" in result.stdout
    import sqlite3

    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        published = db.execute(
            "SELECT count(*) FROM captions_templateversion WHERE status = 'published'"
        ).fetchone()[0]
        members = db.execute("SELECT count(*) FROM approvals_teammembership").fetchone()[0]
    assert published >= 1 and members == 2
