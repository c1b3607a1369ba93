"""Backing services fail mid-run: jobs retry and finish (or fail with a reason), nothing is lost.

RabbitMQ and the S3 server used here are private instances started for the test; the
PostgreSQL faults kill the worker's connections on the shared server's test database.
"""

import json
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from django.db import connection

from generation.models import GenerationJob, JobStatus, Output
from generation.reconcile import reconcile
from generation.services import job_create, jobs_sweep
from generation.storage import get_store
from tests.services import PrivateRabbitMQ, free_port
from tests.workers import CeleryWorker, declare_and_purge_queue

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import s3_server

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability"
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _record(name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps({name: figures}))


def _drive_until_done(ids, settings, timeout=300.0, during=None):
    """Sweep like celery beat until every job is terminal; return the sweeper's counts."""
    counts = {"recovered": 0, "redispatched": 0, "failed": 0}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if during is not None:
            during()
        for key, value in jobs_sweep().items():
            counts[key] += value
        if (
            not GenerationJob.objects.filter(pk__in=ids)
            .exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
            .exists()
        ):
            return counts
        time.sleep(0.5)
    raise AssertionError(f"jobs still open after {timeout} s")


def _statuses(ids):
    return {s: GenerationJob.objects.filter(pk__in=ids, status=s).count() for s in JobStatus.values}


@pytest.fixture
def fast_recovery(settings):
    settings.GENERATION_HEARTBEAT_TIMEOUT = 4
    settings.GENERATION_REDISPATCH_AFTER = 3
    settings.GENERATION_MAX_ATTEMPTS = 20
    return {
        "GENERATION_HEARTBEAT_TIMEOUT": "4",
        "GENERATION_REDISPATCH_AFTER": "3",
        "GENERATION_MAX_ATTEMPTS": "20",
        "GENERATION_MAX_BATCH": "2",
    }


@pytest.fixture
def private_broker(settings):
    """Point this process's Celery app (and the worker) at a private RabbitMQ node."""
    from config.celery import app

    broker = PrivateRabbitMQ()
    broker.start()

    def point_at(url):
        app.conf.broker_url = app.conf.broker_write_url = app.conf.broker_read_url = url
        # The connection and producer pools were built for the shared broker.
        app._pool = None
        app.amqp._producer_pool = None

    original = app.conf.broker_url
    try:
        point_at(broker.url)
        settings.CELERY_BROKER_URL = broker.url
        with app.connection_for_write() as conn:
            assert f":{broker.port}/" in conn.as_uri()
        yield broker
    finally:
        point_at(original)
        broker.shutdown()


def _wait(condition, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def test_rabbitmq_restart_mid_run_loses_no_job(
    requester, model_version, s3_bucket, tmp_path, fast_recovery, private_broker
):
    declare_and_purge_queue()
    worker = CeleryWorker(
        tmp_path, "rmq", {**fast_recovery, "CELERY_BROKER_URL": private_broker.url}
    )
    worker.start()
    first = [job_create(created_by=requester, caption="a red circle", seed=i) for i in range(12)]
    try:
        _wait(lambda: Output.objects.filter(job__in=first).count() >= 3, what="3 outputs")
        private_broker.stop_app()
        # submissions while the broker is down are accepted and kept as queued rows
        during = [
            job_create(created_by=requester, caption="a blue star", seed=100 + i) for i in range(8)
        ]
        time.sleep(3)
        private_broker.start_app()
        ids = [j.id for j in first + during]
        counts = _drive_until_done(ids, None)
    finally:
        worker.stop()
        connection.close()
    statuses = _statuses(ids)
    figures = {
        "jobs": len(ids),
        "submitted_while_broker_down": len(during),
        "statuses": statuses,
        "outputs": Output.objects.filter(job_id__in=ids).count(),
        "sweeper": counts,
    }
    _record("rabbitmq_restart", figures)
    assert statuses[JobStatus.SUCCEEDED] == len(ids), worker.logs()[-3000:]
    assert figures["outputs"] == len(ids)
    assert list(reconcile(get_store())) == []


def test_s3_outage_during_uploads_is_retried_and_loses_nothing(
    requester, model_version, tmp_path, settings, fast_recovery
):
    from generation.dispatch import run_inprocess

    port = s3_server.free_port_block(first=free_port() % 20000 + 30000)
    data_dir = tmp_path / "s3"
    s3_server.start(data_dir, port, bucket="faults")
    for key, value in s3_server.env_for(port, "faults").items():
        setattr(settings, key, value)
    settings.OBJECT_STORE_BACKEND = "s3"
    settings.S3_CONNECT_TIMEOUT = 0.5
    settings.S3_MAX_ATTEMPTS = 1
    get_store.cache_clear()
    with mock.patch("generation.services.dispatch_job"):
        jobs = [job_create(created_by=requester, caption="a red circle", seed=i) for i in range(10)]
    outcomes = []

    def run_all():
        for job in jobs:
            with mock.patch("generation.services.settings.GENERATION_MAX_BATCH", 1):
                run_inprocess(str(job.id))
            outcomes.append(job.id)

    runner = threading.Thread(target=run_all)
    try:
        runner.start()
        _wait(lambda: Output.objects.filter(job__in=jobs).count() >= 2, what="2 outputs")
        s3_server.stop(data_dir)
        down_at = time.monotonic()
        time.sleep(4)
        s3_server.start(data_dir, port, bucket="faults")
        outage = time.monotonic() - down_at
        runner.join(timeout=300)
        ids = [j.id for j in jobs]
        statuses = _statuses(ids)
        retried = GenerationJob.objects.filter(pk__in=ids, attempts__gt=1).count()
        findings = list(reconcile(get_store()))
    finally:
        s3_server.stop(data_dir)
        get_store.cache_clear()
    figures = {
        "jobs": len(ids),
        "outage_s": round(outage, 1),
        "statuses": statuses,
        "jobs_retried": retried,
        "outputs": Output.objects.filter(job_id__in=ids).count(),
        "store_findings": [f.kind for f in findings],
    }
    _record("s3_outage", figures)
    assert statuses[JobStatus.SUCCEEDED] == len(ids)
    assert retried >= 1
    assert figures["outputs"] == len(ids)
    assert findings == []


def test_dropped_database_connections_are_survived(
    requester, model_version, s3_bucket, tmp_path, fast_recovery
):
    declare_and_purge_queue()
    worker = CeleryWorker(tmp_path, "pgdrop", fast_recovery)
    worker.start()
    jobs = [job_create(created_by=requester, caption="a red circle", seed=i) for i in range(16)]
    ids = [j.id for j in jobs]
    killed = {"connections": 0, "rounds": 0}

    def kill_worker_connections():
        if killed["rounds"] >= 5:
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            killed["connections"] += cursor.fetchone()[0]
        killed["rounds"] += 1
        time.sleep(1.0)

    try:
        counts = _drive_until_done(ids, None, during=kill_worker_connections)
    finally:
        worker.stop()
        connection.close()
    statuses = _statuses(ids)
    figures = {
        "jobs": len(ids),
        "kill_rounds": killed["rounds"],
        "connections_killed": killed["connections"],
        "statuses": statuses,
        "outputs": Output.objects.filter(job_id__in=ids).count(),
        "sweeper": counts,
    }
    _record("postgres_connection_drops", figures)
    assert killed["connections"] >= 1
    assert statuses[JobStatus.SUCCEEDED] == len(ids), worker.logs()[-3000:]
    assert figures["outputs"] == len(ids)
