"""Seed years of synthetic history for benchmarks: users, finished jobs with outputs, and audit
events that continue the real hash chain, so ``audit_verify`` passes on the result.

Rows go in with PostgreSQL ``COPY``. Audit events are linked and hashed in Python with the audit
app's own canonical serialisation (``governance/audit/chain.py``), starting from the locked
chain head, and the head moves onto the last seeded event in the same transaction. The head's
"forward by one" trigger is skipped for that single update only: the trigger exists to stop
appends around ``audit_append``, and this command is the one deliberate, verified exception.

Synthetic history in a real trail would be indistinguishable from real history, so the command
refuses any database whose name does not contain "bench" or "test".
"""

from __future__ import annotations

import heapq
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pgtrigger
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction
from django.utils.dateparse import parse_datetime

from generation.models import GenerationJob, JobStatus, Output
from governance.audit.actions import AuditAction
from governance.audit.chain import (
    CHAIN_COLUMNS,
    GENESIS_HASH,
    ChainHasher,
    canonical_payload,
    format_time,
    message_from_row,
)
from governance.audit.models import AuditChainHead, AuditEvent
from governance.registry.models import ModelVersion
from governance.registry.services import RegistryError, model_version_resolve

USER_PREFIX = "scale-user-"
# One caption in this many mentions a rare term, so text search has needles to find.
RARE_TERM = "lighthouse"
RARE_EVERY = 5000

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")
SIZES = ("small", "large", "tiny", "huge")
PLACES = ("on the left", "on the right", "at the top", "at the bottom", "in the centre")

# Events that are not part of a job's life, with their share of those events. Anchoring is
# left out: an anchor event names an object in the anchor store, which seeding cannot create.
OTHER_ACTIONS: tuple[tuple[AuditAction, str, float], ...] = (
    (AuditAction.WEBHOOK_DELIVERED, "webhook", 0.30),
    (AuditAction.REQUEST_CREATED, "request", 0.20),
    (AuditAction.REVIEW_APPROVED, "request", 0.15),
    (AuditAction.OUTPUT_CHECK_RECORDED, "output", 0.15),
    (AuditAction.QUOTA_EXCEEDED, "user", 0.05),
    (AuditAction.REVIEW_REJECTED, "request", 0.03),
    (AuditAction.WEBHOOK_FAILED, "webhook", 0.03),
    (AuditAction.TEMPLATE_VERSION_PUBLISHED, "caption_template_version", 0.03),
    (AuditAction.ROLE_GRANTED, "user", 0.02),
    (AuditAction.REGISTRY_ALIAS_MOVED, "model_alias", 0.02),
    (AuditAction.AUDIT_EXPORTED, "audit_trail", 0.02),
)


@dataclass(slots=True)
class SeededJob:
    """One synthetic job and its output; times are filled in as its events are planned."""

    id: uuid.UUID
    output_id: uuid.UUID
    user: int
    caption: str
    seed: int
    sha256: str
    created_at: datetime | None = None
    finished_at: datetime | None = None
    output_at: datetime | None = None


def check_database_name(name: str) -> None:
    """Raise CommandError unless ``name`` looks like a benchmark or test database."""
    lowered = name.lower()
    if "bench" not in lowered and "test" not in lowered:
        raise CommandError(
            f"refusing to seed synthetic history into database {name!r}: its name must "
            "contain 'bench' or 'test' (seeded events are indistinguishable from real ones)"
        )


def _moment(text: str) -> datetime:
    moment = parse_datetime(text)
    if moment is None:
        raise CommandError(f"{text!r} is not an ISO 8601 time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Seed users, finished jobs with outputs and a valid audit chain at scale (benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=1_000_000, help="audit events to add")
        parser.add_argument("--outputs", type=int, default=200_000, help="jobs with outputs")
        parser.add_argument("--users", type=int, default=500, help="distinct acting users")
        parser.add_argument("--model", default="", help="model reference (default: demo)")
        parser.add_argument("--since", type=_moment, help="first event time (default: --years ago)")
        parser.add_argument("--until", type=_moment, help="last event time (default: now)")
        parser.add_argument("--years", type=float, default=3.0)
        parser.add_argument("--seed", type=int, default=0, help="random seed")
        parser.add_argument("--chunk", type=int, default=100_000, help="events per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        # 1. check where and what
        if connection.vendor != "postgresql":
            raise CommandError("seed_scale_data needs PostgreSQL (it loads rows with COPY)")
        check_database_name(str(connection.settings_dict["NAME"]))
        events, outputs = options["events"], options["outputs"]
        if outputs < 0 or options["users"] < 1 or options["chunk"] < 1:
            raise CommandError("--outputs must be >= 0, --users and --chunk >= 1")
        if events < 3 * outputs:
            raise CommandError(
                f"--events must be at least 3 x --outputs ({3 * outputs}): each job records "
                "job.created, output.created and job.succeeded"
            )
        until = options["until"] or datetime.now(UTC)
        since = options["since"] or until - timedelta(days=365.25 * options["years"])
        if since >= until:
            raise CommandError("--since must be before --until")
        try:
            version = model_version_resolve(options["model"] or "demo")
        except RegistryError as exc:
            raise CommandError(f"--model: {exc}") from exc
        # Seeded from the chain's length too, so a second seeding adds new jobs, not clashes.
        head = AuditChainHead.objects.filter(pk=1).values_list("sequence", flat=True).first()
        rng = random.Random(f"{options['seed']}/{head or 0}")
        started = time.perf_counter()
        # 2. users, then the jobs' identities (their times come from the event plan)
        users = _seed_users(options["users"])
        jobs = [_new_job(rng, len(users)) for _ in range(outputs)]
        # 3. audit events, chunk by chunk, each chunk continuing the chain from its head
        plan = _plan_events(rng, events, jobs, users, version, since, until)
        added = 0
        while added < events:
            added += _append_chunk(plan, min(options["chunk"], events - added), users)
            self.stdout.write(f"  {added} events", ending="\r")
        # 4. the jobs and outputs those events describe
        with transaction.atomic():
            _copy_rows(GenerationJob, (_job_row(job, users, version) for job in jobs))
            _copy_rows(Output, (_output_row(job, version) for job in jobs))
        with connection.cursor() as cursor:
            for model in (AuditEvent, GenerationJob, Output):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        seconds = time.perf_counter() - started
        self.stdout.write(
            f"seeded {events} audit events, {outputs} jobs with outputs and {len(users)} users "
            f"in {seconds:.1f}s"
        )


def _seed_users(count: int) -> list[tuple[int, str]]:
    """Return ``count`` (id, username) pairs of seeded users, creating those missing."""
    user_model = get_user_model()
    names = [f"{USER_PREFIX}{index:05d}" for index in range(count)]
    existing = set(user_model.objects.filter(username__in=names).values_list("username", flat=True))
    password = make_password(None)
    user_model.objects.bulk_create(
        [user_model(username=name, password=password) for name in names if name not in existing]
    )
    ids = dict(user_model.objects.filter(username__in=names).values_list("username", "id"))
    return [(ids[name], name) for name in names]


def _caption(rng: random.Random) -> str:
    caption = (
        f"a {rng.choice(SIZES)} {rng.choice(COLOURS)} {rng.choice(SHAPES)} "
        f"{rng.choice(PLACES)}, {rng.choice(COLOURS)} background"
    )
    if rng.randrange(RARE_EVERY) == 0:
        caption += f", near a {RARE_TERM}"
    return caption


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def _new_job(rng: random.Random, user_count: int) -> SeededJob:
    return SeededJob(
        id=_uuid(rng),
        output_id=_uuid(rng),
        user=_heavy_user(rng, user_count),
        caption=_caption(rng),
        seed=rng.getrandbits(63),
        sha256=f"{rng.getrandbits(256):064x}",
    )


def _heavy_user(rng: random.Random, count: int) -> int:
    # A few users act a lot and most a little, as in any team: index ~ (count + 1) ** uniform.
    return min(count - 1, int((count + 1) ** rng.random()) - 1)


# A planned event: (action, target type, target id, payload, actor index or None, time).
Planned = tuple[str, str, str, dict[str, Any], int | None, datetime]


def _plan_events(
    rng: random.Random,
    total: int,
    jobs: list[SeededJob],
    users: list[tuple[int, str]],
    version: ModelVersion,
    since: datetime,
    until: datetime,
) -> Iterator[Planned]:
    """Yield ``total`` events in time order: each job's three events, the rest other work.

    Job creations are spread evenly over the slots not taken by a job's later events; a job
    finishes (output.created, then job.succeeded) 2 to 40 slots after it was created.
    """
    step_us = max(1, int((until - since).total_seconds() * 1e6) // total)
    free = total - 2 * len(jobs)
    actions = [action for action, _, _ in OTHER_ACTIONS]
    weights = [share for _, _, share in OTHER_ACTIONS]
    targets = {action: target for action, target, _ in OTHER_ACTIONS}
    due: list[tuple[int, int, str, SeededJob]] = []
    free_used = created = 0
    model_version = str(version)
    for slot in range(total):
        at = since + timedelta(microseconds=slot * step_us + rng.randrange(step_us))
        if due and (due[0][0] <= slot or free_used == free):
            _, _, kind, job = heapq.heappop(due)
            if kind == "output":
                job.output_at = at
                yield (
                    AuditAction.OUTPUT_CREATED, "output", str(job.output_id),
                    {"job": str(job.id), "sha256": job.sha256, "size_bytes": _size(job)},
                    None, at,
                )  # fmt: skip
            else:
                job.finished_at = at
                seconds = round((at - job.created_at).total_seconds(), 3) if job.created_at else 0
                yield (
                    AuditAction.JOB_SUCCEEDED, "job", str(job.id),
                    {"output": str(job.output_id), "seconds": seconds}, None, at,
                )  # fmt: skip
            continue
        # Free slot number free_used starts a job when floor(k * jobs / free) steps up.
        starts_job = (free_used + 1) * len(jobs) // free > free_used * len(jobs) // free
        free_used += 1
        if starts_job:
            job = jobs[created]
            created += 1
            job.created_at = at
            finish = slot + rng.randint(2, 40)
            heapq.heappush(due, (finish, 2 * created, "output", job))
            heapq.heappush(due, (finish, 2 * created + 1, "job", job))
            yield (
                AuditAction.JOB_CREATED, "job", str(job.id),
                {"caption": job.caption, "model_version": model_version, "seed": job.seed},
                job.user, at,
            )  # fmt: skip
            continue
        action = rng.choices(actions, weights)[0]
        yield _other_event(rng, action, targets[action], jobs, created, len(users), at)


def _other_event(
    rng: random.Random,
    action: AuditAction,
    target_type: str,
    jobs: list[SeededJob],
    created: int,
    user_count: int,
    at: datetime,
) -> Planned:
    actor: int | None = _heavy_user(rng, user_count)
    number = rng.randrange(1, 50_000)
    payload: dict[str, Any]
    target_id = str(number)
    if action in (AuditAction.WEBHOOK_DELIVERED, AuditAction.WEBHOOK_FAILED):
        actor = None
        status = 200 if action == AuditAction.WEBHOOK_DELIVERED else 503
        payload = {"url": f"https://hooks.example.com/team/{number % 97}", "status": status}
    elif action == AuditAction.OUTPUT_CHECK_RECORDED and created:
        job = jobs[rng.randrange(created)]
        target_id = str(job.output_id)
        payload = {"check": "safety", "passed": rng.random() > 0.01, "sha256": job.sha256}
    elif action == AuditAction.REQUEST_CREATED:
        payload = {"caption": _caption(rng), "template": f"product-shot-{number % 12}"}
    elif action in (AuditAction.QUOTA_EXCEEDED, AuditAction.ROLE_GRANTED):
        target_id = str(rng.randrange(1, user_count + 1))
        payload = {"limit": 500, "role": "reviewer"}
    else:
        payload = {"note": f"synthetic {action.value} {number}"}
    return action, target_type, target_id, payload, actor, at


def _append_chunk(plan: Iterator[Planned], count: int, users: list[tuple[int, str]]) -> int:
    """Link, hash and COPY the next ``count`` planned events after the head; return how many."""
    digest = ChainHasher().digest
    columns = [*CHAIN_COLUMNS, "hash"]
    with transaction.atomic():
        head = _locked_head()
        sequence, prev = head.sequence, head.hash
        with _copy(AuditEvent, columns) as copy:
            for _ in range(count):
                action, target_type, target_id, payload, actor, at = next(plan)
                actor_id, username = (None, "") if actor is None else users[actor]
                sequence += 1
                row = (
                    sequence, format_time(at), actor_id, username, str(action), target_type,
                    target_id, canonical_payload(payload),
                    "" if actor_id is None else f"{sequence:016x}{actor_id:016x}",
                    "" if actor_id is None else f"10.{actor_id % 256}.{sequence % 250}.{7}",
                    prev,
                )  # fmt: skip
                prev = digest(message_from_row(row))
                copy.write_row((*row, prev))
        # Moving the head by more than one is exactly what its trigger refuses; this single
        # update, onto a chain just built from the head, is the one sanctioned exception.
        with pgtrigger.ignore("audit.AuditChainHead:head_forward_only"):
            AuditChainHead.objects.filter(pk=1).update(sequence=sequence, hash=prev)
    return count


def _locked_head() -> AuditChainHead:
    AuditChainHead.objects.bulk_create(
        [AuditChainHead(pk=1, sequence=0, hash=GENESIS_HASH)], ignore_conflicts=True
    )
    return AuditChainHead.objects.select_for_update().get(pk=1)


class _copy:
    """``COPY table (columns) FROM STDIN`` on Django's connection, as a context manager."""

    def __init__(self, model: type[models.Model], columns: list[str]) -> None:
        quote = connection.ops.quote_name
        self.sql = (
            f"COPY {quote(model._meta.db_table)} ({', '.join(quote(c) for c in columns)}) "
            "FROM STDIN"
        )

    def __enter__(self) -> Any:
        self.cursor = connection.cursor()
        self.copy = self.cursor.cursor.copy(self.sql)
        return self.copy.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self.copy.__exit__(*exc)
        finally:
            self.cursor.close()


def _copy_rows(model: type[models.Model], objects: Iterator[models.Model]) -> None:
    """COPY model instances, every concrete column prepared as Django would save it."""
    fields = model._meta.concrete_fields
    with _copy(model, [field.column for field in fields]) as copy:
        for obj in objects:
            copy.write_row(
                [
                    field.get_db_prep_save(getattr(obj, field.attname), connection)
                    for field in fields
                ]
            )


def _job_row(job: SeededJob, users: list[tuple[int, str]], version: ModelVersion) -> GenerationJob:
    assert job.created_at is not None and job.finished_at is not None
    return GenerationJob(
        id=job.id,
        created_by_id=users[job.user][0],
        caption=job.caption,
        seed=job.seed,
        sampling=version.sampling_defaults,
        model_version_id=version.pk,
        model_reference="demo",
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        attempts=1,
        worker="seeded",
        created_at=job.created_at,
        dispatched_at=job.created_at,
        started_at=job.created_at + timedelta(milliseconds=40),
        heartbeat_at=job.finished_at,
        finished_at=job.finished_at,
    )


def _size(job: SeededJob) -> int:
    return 2000 + job.seed % 9000


def _output_row(job: SeededJob, version: ModelVersion) -> Output:
    return Output(
        id=job.output_id,
        job_id=job.id,
        caption=job.caption,
        seed=job.seed,
        sampling=version.sampling_defaults,
        model_version_id=version.pk,
        storage_key=f"outputs/{job.sha256[:2]}/{job.sha256}.png",
        sha256=job.sha256,
        size_bytes=_size(job),
        width=256,
        height=256,
        created_at=job.output_at,
    )
