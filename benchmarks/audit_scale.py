"""Audit trail at scale: auditor searches, full CSV export and chain verification on a seeded
trail of a million events (and 200,000 outputs), measured at half and at full size.

A dedicated database (``varclip_bench_audit``) is created, seeded with
``manage.py seed_scale_data`` in ``--stages`` equal steps, measured after each step, and dropped
at the end. Searches run in this process through ``audit_search`` (what an auditor's page
calls); export and verification run as the management commands an operator would use, in
child processes whose RSS is sampled.

    python benchmarks/audit_scale.py                      # 2 x 500k events, ~15 min on 2 cores
    python benchmarks/audit_scale.py --events 100000 --outputs 20000 --stages 1   # quick
    python benchmarks/audit_scale.py --reuse --keep       # measure an already seeded database

Baselines in the same run: each search also runs with the issue-9 indexes dropped inside a
rolled-back transaction; the export is compared with PostgreSQL's own ``COPY ... TO STDOUT
(FORMAT csv)`` of the same rows (the floor for any export), and verification with hashing the
same messages with no database at all (its ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from platform_env import (
    PYTHON,
    ROOT,
    RssSampler,
    bench_environment,
    create_database,
    database_exists,
    drop_database,
    load_average,
    manage,
    percentiles,
    register_tiny_model,
)

DATABASE = "varclip_bench_audit"
# The indexes issue 9 added for auditor searches; the baseline drops them in a rolled-back
# transaction, so the same data answers the same searches without them.
ISSUE9_INDEXES = (
    "audit_actor_name_seq",
    "audit_payload_trgm",
    "audit_target_id_trgm",
    "audit_actor_name_trgm",
)


# --- searches ---------------------------------------------------------------------------


def search_scenarios(rng: random.Random, context: dict[str, Any]) -> dict[str, Any]:
    """Return name -> function(rng) giving ``audit_search`` keyword arguments."""
    users, jobs = context["users"], context["jobs"]
    first, last = context["first_time"], context["last_time"]
    span = (last - first).total_seconds()
    head = context["head"]

    def moment(r: random.Random, room_days: float) -> datetime:
        return first + timedelta(seconds=r.uniform(0, max(0.0, span - room_days * 86400)))

    def window(r: random.Random, days: float) -> dict[str, Any]:
        start = moment(r, days)
        return {"since": start, "until": start + timedelta(days=days)}

    return {
        "latest page, newest first": lambda r: {"newest_first": True},
        "actor by id": lambda r: {"actor": r.choice(users)[0]},
        "actor by username, newest first": lambda r: {
            "actor": r.choice(users)[1],
            "newest_first": True,
        },
        "action, common (job.created)": lambda r: {
            "action": "job.created",
            "newest_first": r.random() < 0.5,
        },
        "action, rare (role.granted)": lambda r: {"action": "role.granted"},
        "target: one job's history": lambda r: {"target_type": "job", "target_id": r.choice(jobs)},
        "time range: one month": lambda r: window(r, 30),
        "actor + one quarter": lambda r: {"actor": r.choice(users)[0], **window(r, 91)},
        "action + one week": lambda r: {"action": "review.approved", **window(r, 7)},
        "text, rare term": lambda r: {"text": "lighthouse"},
        "text, common term": lambda r: {"text": r.choice(["hexagon", "purple", "quota"])},
        "text, no match": lambda r: {"text": f"zeppelin{r.randrange(10**6)}"},
        "text + actor": lambda r: {"text": "circle", "actor": r.choice(users)[1]},
        "deep keyset page": lambda r: {
            "action": "webhook.delivered",
            "after_sequence": r.randrange(head // 2, head),
        },
    }


def measure_searches(repeats: int, seed: int, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """Time every scenario ``repeats`` times; with ``without``, those indexes are dropped first."""
    from django.db import connection, transaction

    from generation.models import GenerationJob
    from governance.audit.models import AuditEvent
    from governance.audit.services import audit_search

    context = {
        "users": list(
            AuditEvent.objects.filter(actor_username__startswith="scale-user-")
            .values_list("actor_id", "actor_username")
            .distinct()[:500]
        ),
        "jobs": [str(pk) for pk in GenerationJob.objects.values_list("pk", flat=True)[:2000]],
        "first_time": AuditEvent.objects.order_by("sequence").values_list("occurred_at", flat=True)[
            0
        ],
        "last_time": AuditEvent.objects.order_by("-sequence").values_list("occurred_at", flat=True)[
            0
        ],
        "head": AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True)[0],
    }
    rng = random.Random(seed)
    scenarios = search_scenarios(rng, context)
    results: dict[str, Any] = {}
    every: list[float] = []
    with transaction.atomic():
        if without:
            with connection.cursor() as cursor:
                for name in without:
                    cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
        for name, make in scenarios.items():
            timings = []
            for _ in range(repeats):
                arguments = make(rng)
                started = time.perf_counter()
                page = audit_search(limit=100, **arguments)
                timings.append((time.perf_counter() - started) * 1000)
                assert len(page.events) <= 100
            results[name] = percentiles(timings)
            every.extend(timings)
        if without:
            transaction.set_rollback(True)
    results["ALL SEARCHES"] = percentiles(every)
    return results


def explain_searches(seed: int) -> dict[str, str]:
    """Return EXPLAIN ANALYZE of one instance of every scenario (for the README's analysis)."""
    from governance.audit.models import AuditEvent
    from governance.audit.services import audit_filter

    context_rng = random.Random(seed)
    head = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True)[0]
    users = list(
        AuditEvent.objects.filter(actor_username__startswith="scale-user-")
        .values_list("actor_id", "actor_username")
        .distinct()[:50]
    )
    first = AuditEvent.objects.order_by("sequence").values_list("occurred_at", flat=True)[0]
    last = AuditEvent.objects.order_by("-sequence").values_list("occurred_at", flat=True)[0]
    jobs = list(
        AuditEvent.objects.filter(action="job.created").values_list("target_id", flat=True)[:5]
    )
    scenarios = search_scenarios(
        context_rng,
        {"users": users, "jobs": jobs, "first_time": first, "last_time": last, "head": head},
    )
    plans = {}
    for name, make in scenarios.items():
        arguments = make(context_rng)
        newest = arguments.pop("newest_first", False)
        after = arguments.pop("after_sequence", None)
        events = audit_filter(**arguments)
        if after is not None:
            events = events.filter(sequence__gt=after)
        events = events.order_by("-sequence" if newest else "sequence")[:101]
        plans[name] = events.explain(analyze=True, buffers=True)
    return plans


# --- verification and export ------------------------------------------------------------


def measure_verify(env: dict[str, str]) -> dict[str, Any]:
    started = time.perf_counter()
    output = manage(env, "audit_verify")
    wall = time.perf_counter() - started
    match = re.search(r"checked (\d+) events .* in ([\d.]+)s \(([\d,]+) events/s\)", output)
    assert match and "intact" in output, output
    return {
        "events": int(match.group(1)),
        "seconds": float(match.group(2)),
        "events_per_s": int(match.group(3).replace(",", "")),
        "command_wall_s": round(wall, 2),
    }


def measure_hash_ceiling(env: dict[str, str], rows: int) -> dict[str, Any]:
    """Hash ``rows`` canonical messages in memory, with no database: verification's ceiling."""
    script = (
        "import django, time; django.setup()\n"
        "from governance.audit.chain import ChainHasher, message_from_row\n"
        "digest = ChainHasher().digest\n"
        "row = (123456, '2025-01-02T03:04:05.000000+00:00', 42, 'scale-user-00042',"
        " 'job.created', 'job', '0b8f4f0e-6f0e-4f4e-9c44-2a4c8e1f3b11',"
        ' \'{"caption":"a small red circle on the left, blue background",'
        '"model_version":"demo:1","seed":1234567890123}\','
        " '000000000001e240000000000000002a', '10.42.6.7', 'ab' * 32)\n"
        f"n = {rows}\n"
        "t = time.perf_counter()\n"
        "for _ in range(n): digest(message_from_row(row))\n"
        "print(n / (time.perf_counter() - t))\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return {"events_per_s": int(float(result.stdout.strip()))}


def measure_export(env: dict[str, str], *filters: str) -> dict[str, Any]:
    """Run ``audit_export --format csv`` and read its output as a client would."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [PYTHON, "manage.py", "audit_export", "--format", "csv", *filters],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sampler = RssSampler(child.pid)
    sampler.start()
    assert child.stdout is not None
    first_byte = None
    size = lines = 0
    while chunk := child.stdout.read(1 << 20):
        if first_byte is None:
            first_byte = time.perf_counter() - started
        size += len(chunk)
        lines += chunk.count(b"\n")
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    assert status == 0, child.stderr.read().decode() if child.stderr else status
    samples = [value for _, value in sampler.samples] or [0.0]
    quarter = samples[len(samples) // 4]
    return {
        "rows": lines - 1,
        "megabytes": round(size / 1e6, 1),
        "seconds": round(seconds, 2),
        "rows_per_s": int((lines - 1) / seconds),
        "first_byte_s": round(first_byte or 0.0, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        # Flat memory: what RSS still grew after the first quarter of the export.
        "rss_mb_at_25_50_75_100_percent": [
            round(samples[min(len(samples) - 1, i * len(samples) // 4)], 1) for i in (1, 2, 3, 4)
        ],
        "rss_growth_after_first_quarter_mb": round(max(samples) - quarter, 1),
    }


def measure_copy_floor(database_url: str) -> dict[str, Any]:
    """PostgreSQL's own CSV COPY of the same rows: what any export must at least spend."""
    import psycopg

    started = time.perf_counter()
    size = 0
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        query = (
            "COPY (SELECT sequence, occurred_at, actor_id, actor_username, action, target_type,"
            " target_id, payload_json, request_id, client_ip, prev_hash, hash"
            " FROM audit_auditevent ORDER BY sequence) TO STDOUT (FORMAT csv)"
        )
        with cursor.copy(query) as copy:  # type: ignore[arg-type]
            for block in copy:
                size += len(block)
    return {"seconds": round(time.perf_counter() - started, 2), "megabytes": round(size / 1e6, 1)}


# --- the run ----------------------------------------------------------------------------


def seed_stage(env: dict[str, str], args: argparse.Namespace, stage: int) -> dict[str, Any]:
    # Stages cover consecutive stretches of the same --years, so time keeps rising.
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=365.25 * args.years)
    length = (now - start) / args.stages
    since, until = start + stage * length, start + (stage + 1) * length
    started = time.perf_counter()
    manage(
        env,
        "seed_scale_data",
        f"--events={args.events // args.stages}",
        f"--outputs={args.outputs // args.stages}",
        f"--since={since.isoformat()}",
        f"--until={until.isoformat()}",
        f"--seed={stage}",
    )
    return {"seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--outputs", type=int, default=200_000)
    parser.add_argument("--stages", type=int, default=2, help="measure after each 1/stages")
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=30, help="runs of each search")
    parser.add_argument("--reuse", action="store_true", help="measure the existing database")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--no-baseline", action="store_true", help="skip unindexed searches")
    parser.add_argument("--explain", type=Path, help="write EXPLAIN ANALYZE plans here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    env = bench_environment(DATABASE, queue="bench-audit")
    report: dict[str, Any] = {"load_before": load_average(), "stages": []}
    reuse = args.reuse and database_exists(DATABASE)
    if not reuse:
        create_database(DATABASE)
    try:
        manage(env, "migrate", "--verbosity=0")
        if not reuse:
            register_tiny_model(env)
        os.environ.update(env)
        import django

        django.setup()
        stages = [0] if reuse else list(range(args.stages))
        for stage in stages:
            row: dict[str, Any] = {}
            if not reuse:
                print(f"stage {stage + 1}/{args.stages}: seeding", flush=True)
                row["seed"] = seed_stage(env, args, stage)
            from django.db import connection

            connection.close()
            from governance.audit.models import AuditEvent

            row["events"] = AuditEvent.objects.count()
            row["load"] = load_average()
            print(f"  {row['events']} events: searching", flush=True)
            row["search"] = measure_searches(args.repeats, seed=stage)
            if not args.no_baseline:
                row["search_without_issue9_indexes"] = measure_searches(
                    max(3, args.repeats // 5), seed=stage, without=ISSUE9_INDEXES
                )
            print("  verifying", flush=True)
            row["verify"] = measure_verify(env)
            row["hash_ceiling"] = measure_hash_ceiling(env, 300_000)
            print("  exporting", flush=True)
            row["export_csv"] = measure_export(env)
            # The first half of the trail, right after the whole: how export time scales.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY occurred_at)"
                    " FROM audit_auditevent"
                )
                middle = cursor.fetchone()[0]
            row["export_csv_first_half"] = measure_export(env, f"--until={middle.isoformat()}")
            row["copy_floor"] = measure_copy_floor(env["DATABASE_URL"])
            report["stages"].append(row)
            print(json.dumps(row, indent=2, default=str), flush=True)
        if args.explain:
            plans = explain_searches(seed=0)
            args.explain.write_text(
                "\n\n".join(f"## {name}\n{plan}" for name, plan in plans.items())
            )
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            drop_database(DATABASE)
    report["load_after"] = load_average()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
