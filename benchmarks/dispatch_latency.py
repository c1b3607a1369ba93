"""Dispatch overhead: from the API accepting a job to a real Celery worker starting it, over
RabbitMQ, one job at a time on an idle worker (the tiny model, so each job ends quickly;
``--gap`` seconds pass between one job's end and the next submission).

Per job, three moments on the same clock: ``created_at`` (the row is inserted by the API, just
before commit and publish), the client receiving ``201 Created``, and ``started_at`` (the
worker's claim, the first thing ``job_execute`` writes). Reported: accepted-to-started, both
from ``created_at`` (server side, includes commit and publish) and from the 201.

    python benchmarks/dispatch_latency.py --jobs 60

Baseline in the same run: the bare broker round trip, a kombu message published to and
consumed from a queue on the same RabbitMQ (the floor any dispatch through it pays).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api_load import CONFIGS, PROXY_HEADERS, delete_queue, start_gunicorn, stop
from platform_env import (
    PYTHON,
    ROOT,
    bench_environment,
    create_database,
    drop_database,
    load_average,
    manage,
    percentiles,
    register_tiny_model,
)

DATABASE = "varclip_bench_dispatch"


def start_worker(env: dict[str, str], queue: str) -> subprocess.Popen[bytes]:
    log = open(Path(env["VAR_DIR"]) / "worker.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "config", "worker", "-Q", queue, "--pool", "solo",
         "--concurrency", "1", "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
         "--hostname", f"bench-{queue}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def submit(port: int, token: str, seed: int) -> tuple[str, float]:
    """POST one job; return its id and the wall-clock time the 201 arrived."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"caption": "a small red circle on the left, blue background", "seed": seed})
    conn.request(
        "POST",
        "/api/v1/jobs/",
        body,
        {"Authorization": f"Token {token}", "Content-Type": "application/json", **PROXY_HEADERS},
    )
    response = conn.getresponse()
    received = time.time()
    payload = response.read()
    conn.close()
    assert response.status == 201, payload
    return json.loads(payload)["id"], received


def wait_for(job_id: str, timeout: float = 60.0) -> Any:
    """Poll until the job is finished; return the row."""
    from generation.models import GenerationJob

    deadline = time.time() + timeout
    while time.time() < deadline:
        job = GenerationJob.objects.get(pk=job_id)
        if job.finished_at is not None:
            return job
        time.sleep(0.005)
    raise TimeoutError(f"job {job_id} did not finish in {timeout}s")


def broker_round_trip(url: str, count: int) -> dict[str, Any]:
    """Publish ``count`` messages one by one and time each until it is consumed."""
    from kombu import Connection, Exchange, Queue

    name = f"bench-rtt-{uuid.uuid4().hex[:8]}"
    exchange = Exchange(name, type="direct")
    queue = Queue(name, exchange, routing_key=name, auto_delete=True)
    timings = []
    with Connection(url) as conn:
        received: list[float] = []

        def on_message(body: Any, message: Any) -> None:
            received.append(time.time())
            message.ack()

        with conn.Consumer(queue, callbacks=[on_message]):
            producer = conn.Producer()
            for _ in range(count):
                sent = time.time()
                producer.publish({"t": sent}, exchange=exchange, routing_key=name, declare=[queue])
                conn.drain_events(timeout=5)
                timings.append((received[-1] - sent) * 1000)
    return percentiles(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between jobs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    queue = f"bench-dispatch-{uuid.uuid4().hex[:8]}"
    env = bench_environment(DATABASE, queue=queue, THROTTLE_SUBMISSION="1000000/min")
    report: dict[str, Any] = {"load_before": load_average(), "jobs": args.jobs}
    create_database(DATABASE)
    server = worker = None
    try:
        manage(env, "migrate", "--verbosity=0")
        register_tiny_model(env)
        os.environ.update(env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        user = get_user_model().objects.create_user("bench-dispatch")
        token = Token.objects.create(user=user).key
        server, port = start_gunicorn(env, CONFIGS["tuned"])
        worker = start_worker(env, queue)
        # The first jobs load the model into the worker; they are not counted.
        for seed in range(args.warmup):
            wait_for(submit(port, token, seed)[0], timeout=300)
        from_created, from_201, runs = [], [], []
        for seed in range(args.jobs):
            # The worker still acknowledges and stores the result after finished_at is
            # written; the pause lets it return to waiting, so each job meets an idle worker.
            time.sleep(args.gap)
            job_id, received = submit(port, token, 1000 + seed)
            job = wait_for(job_id)
            assert job.status == "succeeded", (job.status, job.failure_reason)
            from_created.append((job.started_at - job.created_at).total_seconds() * 1000)
            from_201.append((job.started_at.timestamp() - received) * 1000)
            runs.append((job.finished_at - job.started_at).total_seconds() * 1000)
        report.update(
            {
                "accepted_to_started_ms (created_at -> started_at)": percentiles(from_created),
                "201_to_started_ms (client receives 201 -> started_at)": percentiles(from_201),
                "job_run_ms (started_at -> finished_at)": percentiles(runs),
                "baseline: broker round trip ms": broker_round_trip(env["CELERY_BROKER_URL"], 200),
                "load_after": load_average(),
            }
        )
    finally:
        for process in (worker, server):
            if process is not None:
                stop(process)
        from django.db import connections

        connections.close_all()
        try:
            delete_queue(env, queue)
        except Exception as exc:
            print(f"queue {queue} not deleted: {exc}")
        drop_database(DATABASE)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
