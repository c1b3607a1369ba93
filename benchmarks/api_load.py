"""API under load: job-status reads and job submissions under gunicorn, driven on loopback by
32 concurrent keep-alive clients (one user and token each) for 30 s per workload.

Production settings (DJANGO_DEBUG=0) on PostgreSQL, Redis and RabbitMQ, in a dedicated
database (``varclip_bench_api``: 20,000 finished jobs seeded with ``seed_scale_data``) and a
dedicated queue; every accepted submission is dispatched to RabbitMQ for real and the queue
is counted, then deleted. The submission throttle (DRF scope ``submission``, 120/min per user)
is raised to 1,000,000/min through ``THROTTLE_SUBMISSION`` so that it does not shape the load.

    python benchmarks/api_load.py                     # baseline + tuned, ~6 min on 2 cores
    python benchmarks/api_load.py --clients 16 --duration 30 --configs tuned

Baseline in the same run: ``gunicorn config.wsgi`` with gunicorn's defaults (one sync worker),
as the README's process list starts it, against the tuned configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from http_load import LoadResult, run_load
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

DATABASE = "varclip_bench_api"
CONFIGS = {
    "baseline": [],
    # Two processes for two cores, threads to overlap database, Redis and broker waits.
    "tuned": ["--workers", "2", "--worker-class", "gthread", "--threads", "8"],
    # Also tried at 12 s each (load 6-12): 4 sync workers 74 req/s, 3x4 gthread 102 req/s,
    # 2x4 gthread 163 req/s, against 180 req/s for 2x8 gthread (closed loop, 32 clients).
    "sync4": ["--workers", "4"],
    "gthread3x4": ["--workers", "3", "--worker-class", "gthread", "--threads", "4"],
    "gthread2x4": ["--workers", "2", "--worker-class", "gthread", "--threads", "4"],
}
# The clients stand in for the TLS-terminating proxy production runs behind (settings redirect
# plain HTTP to HTTPS when DEBUG is off and trust X-Forwarded-Proto).
PROXY_HEADERS = {"X-Forwarded-Proto": "https", "Accept": "application/json"}
CAPTIONS = [
    "a large red circle on the left, blue background",
    "small yellow star in the centre over green",
    "a small white cross at the top, black background",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(env: dict[str, str], options: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = open(Path(env["VAR_DIR"]) / f"gunicorn-{port}.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", *options],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        raise RuntimeError(f"gunicorn did not start; see {log.name}")
    return server, port


def stop(server: subprocess.Popen[bytes]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def summarise(result: LoadResult) -> dict[str, Any]:
    return {
        "requests_ok": result.ok,
        "statuses": result.statuses,
        "errors": result.errors,
        "seconds": round(result.seconds, 1),
        "requests_per_s": round(result.ok / result.seconds, 1),
        "latency_ms": percentiles(result.latencies_ms),
    }


def prepare(env: dict[str, str], clients: int, jobs: int) -> list[str]:
    """Seed finished jobs and give each of the ``clients`` seeded users a token."""
    manage(
        env,
        "seed_scale_data",
        f"--events={3 * jobs}",
        f"--outputs={jobs}",
        f"--users={clients}",
        "--years=0.5",
    )
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    users = list(get_user_model().objects.filter(username__startswith="scale-user-"))
    users.sort(key=lambda user: user.username)
    return [Token.objects.get_or_create(user=user)[0].key for user in users[:clients]]


def queue_depth(env: dict[str, str], queue: str) -> int:
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(env["CELERY_BROKER_URL"]) as conn:
        try:
            _, count, _ = conn.channel().queue_declare(queue=queue, passive=True)
        except NotFound:  # nothing was ever published to it
            return 0
        return int(count)


def purge_queue(env: dict[str, str], queue: str) -> None:
    from kombu import Connection

    # A queue not declared yet has had nothing published to it.
    with Connection(env["CELERY_BROKER_URL"]) as conn, contextlib.suppress(Exception):
        conn.channel().queue_purge(queue=queue)


def delete_queue(env: dict[str, str], queue: str) -> None:
    from kombu import Connection

    with Connection(env["CELERY_BROKER_URL"]) as conn:
        conn.channel().queue_delete(queue=queue)


def measure(
    port: int,
    tokens: list[str],
    own: dict[str, list[str]],
    args: argparse.Namespace,
    workload: str,
    rate: float | None,
) -> LoadResult:
    rng = random.Random(0)

    def headers(i: int) -> dict[str, str]:
        return {"Authorization": f"Token {tokens[i % len(tokens)]}", **PROXY_HEADERS}

    def status_read(i: int) -> tuple[str, str, Any]:
        return "GET", f"/api/v1/jobs/{rng.choice(own[tokens[i % len(tokens)]])}/", None

    def submission(i: int) -> tuple[str, str, Any]:
        body = {"caption": rng.choice(CAPTIONS), "seed": rng.randrange(2**31)}
        return "POST", "/api/v1/jobs/", body

    make = status_read if workload == "status" else submission
    # Warm every worker and connection first; those requests are not counted.
    run_load(port=port, clients=args.clients, seconds=3, make=make, headers=headers)
    return run_load(
        port=port,
        clients=args.clients,
        seconds=args.duration,
        make=make,
        headers=headers,
        rate=rate,
        max_requests=int(args.duration * 5000),
    )


def own_jobs(tokens: list[str]) -> dict[str, list[str]]:
    """Each token's jobs to read: up to 100 still queued (from submissions) and 100 finished."""
    from rest_framework.authtoken.models import Token

    from generation.models import GenerationJob, JobStatus

    own = {}
    for key in tokens:
        user_id = Token.objects.get(key=key).user_id
        jobs = GenerationJob.objects.filter(created_by_id=user_id)
        queued = jobs.filter(status=JobStatus.QUEUED).values_list("pk", flat=True)[:100]
        done = jobs.filter(status=JobStatus.SUCCEEDED).values_list("pk", flat=True)[:100]
        own[key] = [str(pk) for pk in [*queued, *done]]
    return own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per workload")
    parser.add_argument("--jobs", type=int, default=20_000, help="seeded finished jobs")
    parser.add_argument("--configs", default="baseline,tuned", help=f"of {', '.join(CONFIGS)}")
    parser.add_argument(
        "--runs",
        default="submission:closed,submission:100,status:closed,status:200",
        help="workload:closed (no pauses) or workload:RATE (open loop, requests/s in all)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    queue = f"bench-api-{uuid.uuid4().hex[:8]}"
    env = bench_environment(DATABASE, queue=queue, THROTTLE_SUBMISSION="1000000/min")
    report: dict[str, Any] = {
        "clients": args.clients,
        "duration_s": args.duration,
        "throttle": "THROTTLE_SUBMISSION=1000000/min (default 120/min per user)",
        "load_before": load_average(),
        "runs": [],
    }
    create_database(DATABASE)
    try:
        manage(env, "migrate", "--verbosity=0")
        register_tiny_model(env)
        tokens = prepare(env, args.clients, args.jobs)
        from generation.models import GenerationJob

        for config in args.configs.split(","):
            server, port = start_gunicorn(env, CONFIGS[config])
            try:
                for run in args.runs.split(","):
                    workload, _, mode = run.partition(":")
                    rate = None if mode in ("", "closed") else float(mode)
                    if workload == "submission":
                        purge_queue(env, queue)
                    before = GenerationJob.objects.count()
                    row: dict[str, Any] = {
                        "config": config,
                        "workload": workload,
                        "offered_rate": rate or "closed loop",
                        "load": load_average(),
                    }
                    result = measure(port, tokens, own_jobs(tokens), args, workload, rate)
                    row.update(summarise(result))
                    if workload == "submission":
                        row["jobs_created"] = GenerationJob.objects.count() - before
                        row["messages_in_queue"] = queue_depth(env, queue)
                    report["runs"].append(row)
                    print(json.dumps(row), flush=True)
            finally:
                stop(server)
    finally:
        from django.db import connections

        connections.close_all()
        try:
            delete_queue(env, queue)
        except Exception as exc:  # the queue exists only once a submission ran
            print(f"queue {queue} not deleted: {exc}")
        drop_database(DATABASE)
    report["load_after"] = load_average()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
