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
from django.conf import settings
from django.db import connection

from generation.models import GenerationJob, JobStatus

ROOT = Path(__file__).resolve().parents[1]


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def celery_worker(transactional_db, tmp_path):
    """A real Celery worker process consuming the gpu queue of RabbitMQ."""
    from config.celery import app

    queue = app.amqp.queues[settings.GENERATION_QUEUE]
    with app.connection_for_write() as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()
    env = {**os.environ, "DATABASE_URL": _database_url(), "VAR_DIR": str(tmp_path)}
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", settings.GENERATION_QUEUE,
         "--pool", "solo", "--concurrency", "1", "--loglevel", "INFO", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "-n", f"e2e-{os.getpid()}@localhost"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
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
    celery_worker, api, model_version, s3_bucket, tmp_path
):
    response = api.post(
        "/api/v1/jobs/", {"caption": "a small blue star on the left", "seed": 42}, format="json"
    )
    assert response.status_code == 201, response.content
    job = _wait_for(response.json()["id"])
    log = (tmp_path / "worker.log").read_text()
    assert job.status == JobStatus.SUCCEEDED, f"{job.failure_reason}\n{log[-3000:]}"
    assert job.worker.startswith("e2e-")
    detail = api.get(f"/api/v1/jobs/{job.id}/").json()
    assert detail["progress"] == 1.0 and detail["scales_done"] == detail["scales_total"] == 4
    output = api.get(f"/api/v1/outputs/{detail['output']}/").json()
    redirect = api.get(output["download_url"])
    assert redirect.status_code == 302
    with urllib.request.urlopen(redirect["Location"], timeout=10) as fetched:
        data = fetched.read()
    assert hashlib.sha256(data).hexdigest() == output["sha256"] == job.output.sha256
    assert job.output.size_bytes == len(data)


def test_embedded_default_demo_generates_an_image_with_its_record(tmp_path):
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
