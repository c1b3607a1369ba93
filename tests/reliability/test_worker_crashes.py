"""SIGKILL the worker at random moments while 60 jobs run: nothing is lost or doubled."""

import json
import random
import time
from pathlib import Path

import pytest
from django.db import connection

from generation.models import GenerationJob, JobStatus, Output
from generation.reconcile import reconcile
from generation.services import job_create, jobs_sweep
from generation.storage import get_store
from tests.workers import CeleryWorker, declare_and_purge_queue

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
JOBS = 60
KILLS = 5
HEARTBEAT = 4


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_sigkilled_workers_lose_no_job_and_double_no_output(
    requester, model_version, s3_bucket, tmp_path, settings
):
    settings.GENERATION_HEARTBEAT_TIMEOUT = HEARTBEAT
    settings.GENERATION_REDISPATCH_AFTER = HEARTBEAT
    settings.GENERATION_MAX_ATTEMPTS = 20
    declare_and_purge_queue()
    worker = CeleryWorker(
        tmp_path,
        "crash",
        {
            "GENERATION_HEARTBEAT_TIMEOUT": str(HEARTBEAT),
            "GENERATION_MAX_ATTEMPTS": "20",
            "GENERATION_MAX_BATCH": "2",
        },
    )
    rng = random.Random(20261126)
    worker.start()
    started = time.monotonic()
    jobs = [
        job_create(created_by=requester, caption=f"a red circle, variation {i}", seed=i)
        for i in range(JOBS)
    ]
    ids = [job.id for job in jobs]
    kills, killed_mid_job, sweeps = 0, 0, {"recovered": 0, "redispatched": 0, "failed": 0}
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 1.5))
            for key, value in jobs_sweep().items():
                sweeps[key] += value
            open_jobs = GenerationJob.objects.filter(pk__in=ids).exclude(
                status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
            )
            if not open_jobs.exists():
                break
            if kills < KILLS and rng.random() < 0.5:
                running = open_jobs.filter(status=JobStatus.RUNNING).exists()
                worker.kill()
                kills += 1
                killed_mid_job += int(running)
                worker.start()
    finally:
        worker.stop()
        connection.close()
    elapsed = time.monotonic() - started

    statuses = dict(
        (status, GenerationJob.objects.filter(pk__in=ids, status=status).count())
        for status in JobStatus.values
    )
    outputs = Output.objects.filter(job_id__in=ids)
    findings = list(reconcile(get_store()))
    figures = {
        "jobs": JOBS,
        "kills": kills,
        "kills_while_a_job_ran": killed_mid_job,
        "seconds": round(elapsed, 1),
        "statuses": statuses,
        "outputs": outputs.count(),
        "distinct_jobs_with_output": outputs.values("job_id").distinct().count(),
        "attempts_total": sum(
            GenerationJob.objects.filter(pk__in=ids).values_list("attempts", flat=True)
        ),
        "sweeper": sweeps,
        "store_findings": [f.kind for f in findings],
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "worker_crashes.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))

    assert kills >= KILLS, worker.logs()[-3000:]
    assert statuses[JobStatus.SUCCEEDED] == JOBS, (figures, worker.logs()[-3000:])
    assert figures["outputs"] == figures["distinct_jobs_with_output"] == JOBS
    assert findings == []
