"""Write to the audit trail, search it and export it.

``audit_append`` is the only way an event enters the trail. It runs inside the caller's
transaction, so an event commits or rolls back with the governed write it records.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from governance.audit.actions import AuditAction
from governance.audit.chain import (
    GENESIS_HASH,
    ChainHasher,
    canonical_message,
    canonical_payload,
    format_time,
)
from governance.audit.context import clean_client_ip, clean_request_id, current_context
from governance.audit.errors import (
    AuditChainBroken,
    AuditInvalid,
    AuditOutsideTransaction,
)
from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.signals import audit_appending

Actor = AbstractBaseUser | AnonymousUser | None

SEARCH_MAX_LIMIT = 1000
EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_COLUMNS = (
    "sequence",
    "occurred_at",
    "actor_id",
    "actor_username",
    "action",
    "target_type",
    "target_id",
    "payload",
    "request_id",
    "client_ip",
    "prev_hash",
    "hash",
)
_EXPORT_VALUES = tuple("payload_json" if name == "payload" else name for name in EXPORT_COLUMNS)
# Chunks of about this many characters leave the export at a time.
EXPORT_CHUNK_CHARS = 64 * 1024
FILTER_NAMES = ("actor", "action", "target_type", "target_id", "since", "until", "text")


# --- append -----------------------------------------------------------------------------


def audit_append(
    *,
    actor: Actor,
    action: AuditAction | str,
    target_type: str,
    target_id: str | int | Any,
    payload: Mapping[str, Any] | None = None,
    request_id: str = "",
    client_ip: str | None = None,
) -> AuditEvent:
    """Append one event to the hash chain inside the caller's transaction and return it.

    Request id and client address default to those of the current request
    (``AuditContextMiddleware``) or ``audit_context`` block.
    """
    # 1. The event must share the fate of the write it records.
    if not transaction.get_connection().in_atomic_block:
        raise AuditOutsideTransaction(
            "audit_append must run inside transaction.atomic(), in the same transaction "
            "as the write it records"
        )
    # 2. Check every field before taking the chain lock.
    action = _checked_action(action)
    target_type = _checked_text("target_type", target_type, 64, required=True)
    target_id = _checked_text("target_id", "" if target_id is None else str(target_id), 128)
    payload_json = canonical_payload(payload)
    context = current_context()
    if request_id:
        if clean_request_id(request_id) is None:
            raise AuditInvalid("request_id", "must be 1-64 characters of A-Z a-z 0-9 . _ : -")
    else:
        request_id = context.request_id
    if client_ip is None:
        client_ip = context.client_ip
    elif client_ip and not (client_ip := clean_client_ip(client_ip)):
        raise AuditInvalid("client_ip", "is not an IP address")
    actor_id, actor_username = _actor_snapshot(actor)
    # 3. Let receivers (webhooks) read what they need while no lock is held.
    followups = [then for _, then in audit_appending.send(AuditEvent, action=action) if then]
    # 4. Take the chain head; its row lock holds until the caller's transaction ends.
    head = _locked_head()
    # 5. Link, hash and insert the event, then move the head onto it.
    event = AuditEvent(
        sequence=head.sequence + 1,
        occurred_at=timezone.now(),
        actor_id=actor_id,
        actor_username=actor_username,
        action=action,
        target_type=target_type,
        target_id=target_id,
        payload_json=payload_json,
        request_id=request_id,
        client_ip=client_ip,
        prev_hash=head.hash,
    )
    event.hash = ChainHasher().digest(
        canonical_message(
            sequence=event.sequence,
            occurred_at=event.occurred_at,
            actor_id=actor_id,
            actor_username=actor_username,
            action=action,
            target_type=target_type,
            target_id=target_id,
            payload_json=payload_json,
            request_id=request_id,
            client_ip=client_ip,
            prev_hash=event.prev_hash,
        )
    )
    event.save()
    AuditChainHead.objects.filter(pk=1).update(
        sequence=event.sequence, hash=event.hash, updated_at=event.occurred_at
    )
    # 6. The receivers' writes that need the event (its sequence).
    for then in followups:
        then(event)
    return event


def _checked_action(action: AuditAction | str) -> str:
    value = str(action.value if isinstance(action, AuditAction) else action)
    if value not in AuditAction.values:
        raise AuditInvalid("action", f"unknown audit action {value!r}; add it to AuditAction")
    return value


def _checked_text(field: str, value: object, max_length: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise AuditInvalid(field, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise AuditInvalid(field, "must not be blank")
    if len(value) > max_length:
        raise AuditInvalid(field, f"is {len(value)} characters, above {max_length}")
    if "\x00" in value:
        raise AuditInvalid(field, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditInvalid(field, "is not valid Unicode text") from None
    return value


def _actor_snapshot(actor: Actor) -> tuple[int | None, str]:
    if actor is None or not getattr(actor, "is_authenticated", False) or actor.pk is None:
        return None, ""
    return int(actor.pk), actor.get_username()


def _locked_head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        # A fresh trail. Concurrent first appenders: one insert wins, the others wait on
        # it, insert nothing, and then queue on its row lock.
        AuditChainHead.objects.bulk_create(
            [AuditChainHead(pk=1, sequence=0, hash=GENESIS_HASH)], ignore_conflicts=True
        )
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    # A head at the start beside existing events means the head row was lost.
    if head.sequence == 0 and AuditEvent.objects.exists():
        raise AuditChainBroken(
            "the audit chain head is missing while events exist; run manage.py audit_verify"
        )
    return head


# --- search -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditPage:
    """One page of events; pass ``next_after_sequence`` as ``after_sequence`` for the next."""

    events: list[AuditEvent]
    next_after_sequence: int | None


def audit_search(
    *,
    actor: Actor | int | str = None,
    action: AuditAction | str | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str | None = None,
    after_sequence: int | None = None,
    limit: int = 100,
    newest_first: bool = False,
) -> AuditPage:
    """Return one keyset-paginated page of matching events in sequence order.

    ``actor`` is a user, a user id or a username; ``since`` is inclusive and ``until``
    exclusive; ``text`` matches the payload, target id and actor username, ignoring case;
    ``after_sequence`` continues after that event in the listing order.
    """
    if not 1 <= limit <= SEARCH_MAX_LIMIT:
        raise AuditInvalid("limit", f"must be between 1 and {SEARCH_MAX_LIMIT}")
    events = audit_filter(
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
        text=text,
    )
    if after_sequence is not None:
        if not isinstance(after_sequence, int) or after_sequence < 0:
            raise AuditInvalid("after_sequence", "must be a non-negative integer")
        cursor = "sequence__lt" if newest_first else "sequence__gt"
        events = events.filter(**{cursor: after_sequence})
    ordered = events.order_by("-sequence" if newest_first else "sequence")
    rows = list(ordered[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(events=rows, next_after_sequence=rows[-1].sequence if more else None)


def audit_filter(
    *,
    actor: Actor | int | str = None,
    action: AuditAction | str | None = None,
    target_type: str | None = None,
    target_id: str | int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str | None = None,
) -> QuerySet[AuditEvent]:
    """Return the events matching every given filter (see ``audit_search``), unordered."""
    events = AuditEvent.objects.all()
    if actor is not None:
        if isinstance(actor, str):
            events = events.filter(actor_username=actor)
        elif isinstance(actor, int):
            events = events.filter(actor_id=actor)
        else:
            actor_id, _ = _actor_snapshot(actor)
            if actor_id is None:
                raise AuditInvalid("actor", "must be a signed-in user, a user id or a username")
            events = events.filter(actor_id=actor_id)
    if action:
        events = events.filter(action=_checked_action(action))
    if target_type:
        events = events.filter(target_type=target_type)
    if target_id is not None and target_id != "":
        events = events.filter(target_id=str(target_id))
    if since is not None:
        events = events.filter(occurred_at__gte=_aware("since", since))
    if until is not None:
        events = events.filter(occurred_at__lt=_aware("until", until))
    if text:
        events = events.filter(
            Q(payload_json__icontains=text)
            | Q(target_id__icontains=text)
            | Q(actor_username__icontains=text)
        )
    return events


def _aware(field: str, moment: object) -> datetime:
    if not isinstance(moment, datetime):
        raise AuditInvalid(field, f"must be a datetime, got {type(moment).__name__}")
    # A naive time is read as UTC, the platform's time zone.
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


# --- export -----------------------------------------------------------------------------


def audit_export(
    source: QuerySet[AuditEvent] | Mapping[str, Any] | None = None,
    fmt: str = "csv",
    *,
    actor: Actor = None,
    batch_size: int = 250,
) -> Iterator[str]:
    """Return an iterator of text chunks (CSV or JSON Lines) of the matching events.

    Rows are read in keyset batches over ``sequence``, never all at once. The export is
    itself audited: an ``audit.exported`` event when it starts (who, filters) and another
    when it ends (how many rows, completed or abandoned).
    """
    if fmt not in EXPORT_FORMATS:
        raise AuditInvalid("fmt", f"must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if not 1 <= batch_size <= 10_000:
        raise AuditInvalid("batch_size", "must be between 1 and 10000")
    if source is None:
        source = {}
    if isinstance(source, QuerySet):
        if source.model is not AuditEvent:
            raise AuditInvalid("source", "must be a queryset of AuditEvent")
        events, described = source, {"query": _describe_query(source)}
    elif isinstance(source, Mapping):
        unknown = sorted(set(source) - set(FILTER_NAMES))
        if unknown:
            raise AuditInvalid("filters", f"unknown filter {', '.join(unknown)}")
        events = audit_filter(**source)
        described = {name: _describe_value(value) for name, value in source.items()}
    else:
        raise AuditInvalid("source", "must be a queryset of AuditEvent or a mapping of filters")
    return _export_stream(events, fmt, actor, described, batch_size)


def _export_stream(
    events: QuerySet[AuditEvent],
    fmt: str,
    actor: Actor,
    filters: dict[str, Any],
    batch_size: int,
) -> Iterator[str]:
    # 1. Fix the range now, so the export is a stable slice that excludes its own events.
    upper = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    record = {"format": fmt, "filters": filters, "up_to_sequence": upper or 0}
    _record_export(actor, {**record, "status": "started"})
    # 2. Stream the rows as chunks of about EXPORT_CHUNK_CHARS, counting what was handed out.
    count = 0
    try:
        if fmt == "csv":
            yield _CSV.writerow(EXPORT_COLUMNS)
        pending: list[str] = []
        size = 0
        for line in _export_lines(events, fmt, upper or 0, batch_size):
            pending.append(line)
            size += len(line)
            if size >= EXPORT_CHUNK_CHARS:
                count += len(pending)
                chunk, pending, size = "".join(pending), [], 0
                yield chunk
        if pending:
            count += len(pending)
            yield "".join(pending)
    except GeneratorExit:
        _record_export(actor, {**record, "status": "abandoned", "count": count})
        raise
    # 3. Record how much left the building.
    _record_export(actor, {**record, "status": "completed", "count": count})


def _export_lines(
    events: QuerySet[AuditEvent], fmt: str, upper: int, batch_size: int
) -> Iterator[str]:
    """Yield one formatted line per event, reading keyset batches over ``sequence``."""
    last = 0
    while True:
        rows = list(
            events.filter(sequence__gt=last, sequence__lte=upper)
            .order_by("sequence")
            .values_list(*_EXPORT_VALUES)[:batch_size]
        )
        if not rows:
            return
        last = rows[-1][0]
        for row in rows:
            yield _csv_line(row) if fmt == "csv" else _jsonl_line(row)


def _record_export(actor: Actor, payload: dict[str, Any]) -> None:
    with transaction.atomic():
        audit_append(
            actor=actor,
            action=AuditAction.AUDIT_EXPORTED,
            target_type="audit_trail",
            target_id="",
            payload=payload,
        )


class _Echo:
    """A file-like object whose write returns the line, so csv.writer formats one row."""

    def write(self, line: str) -> str:
        return line


_CSV = csv.writer(_Echo(), lineterminator="\n")


def _csv_line(row: tuple[Any, ...]) -> str:
    actor_id = "" if row[2] is None else row[2]
    return _CSV.writerow((row[0], format_time(row[1]), actor_id, *row[3:]))  # type: ignore[no-any-return]


def _jsonl_line(row: tuple[Any, ...]) -> str:
    item = dict(zip(EXPORT_COLUMNS, row, strict=True))
    item["occurred_at"] = format_time(row[1])
    item["payload"] = json.loads(item["payload"])
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


def _describe_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(_aware("since/until", value))
    if isinstance(value, AbstractBaseUser):
        return value.get_username()
    if value is None or isinstance(value, int | str | bool):
        return value
    return str(value)


def _describe_query(events: QuerySet[AuditEvent]) -> str:
    try:
        text = str(events.query)
    except Exception:  # an empty queryset has no SQL; the filters are then "nothing"
        text = "(no rows)"
    return text[:2000]
