"""Recompute the whole chain and compare it with its head and its anchors.

The walk streams events in sequence order through a server-side cursor, holding one
chunk at a time, and recomputes each keyed hash; the first problem found is the first
broken link. Anchors are then checked against the events they attest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import CharField, F, Func

from governance.audit.actions import AuditAction
from governance.audit.anchoring import ANCHOR_PREFIX, Anchor, anchor_key, anchor_store
from governance.audit.chain import CHAIN_COLUMNS, GENESIS_HASH, ChainHasher, message_from_row
from governance.audit.errors import AnchorStoreError
from governance.audit.models import AuditChainHead, AuditEvent
from governance.audit.services import Actor, audit_append

# Problem kinds, in the words the command prints.
GAP = "gap in sequence"
PREV_HASH_MISMATCH = "prev_hash mismatch"
HASH_MISMATCH = "hash mismatch"
MISSING_HEAD = "missing head"
HEAD_MISMATCH = "head mismatch"
ANCHOR_MISMATCH = "anchor mismatch"
ANCHOR_BEYOND_CHAIN = "anchored event missing"
ANCHOR_INVALID = "anchor invalid"
ANCHOR_MISSING = "anchor object missing"
ANCHOR_OVERWRITTEN = "anchor written over"
ANCHORS_UNAVAILABLE = "anchor store unavailable"

# Beyond this many, further chain problems are counted, not listed.
MAX_LISTED_PROBLEMS = 100
# A recorded verification keeps this many problem lines; the count says how many there were.
RECORDED_PROBLEMS = 20


@dataclass(frozen=True)
class ChainProblem:
    """One broken link: where (sequence, if any), what kind, and the details."""

    sequence: int | None
    kind: str
    detail: str

    def __str__(self) -> str:
        where = f"sequence {self.sequence}" if self.sequence is not None else "chain"
        return f"{where}: {self.kind} — {self.detail}"


@dataclass
class AuditVerification:
    """What a verification checked and every problem it found, first broken link first."""

    checked: int = 0
    last_sequence: int = 0
    anchors_checked: int = 0
    seconds: float = 0.0
    problems: list[ChainProblem] = field(default_factory=list)
    unlisted_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken_link(self) -> ChainProblem | None:
        return self.problems[0] if self.problems else None

    def _add(self, problem: ChainProblem) -> None:
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(problem)
        else:
            self.unlisted_problems += 1


def audit_verify(*, anchors: int = 10, chunk_size: int = 5000) -> AuditVerification:
    """Recompute every event's hash and link, then check the head and the latest anchors.

    ``anchors`` is how many of the most recent anchors the chain records are fetched, on
    top of any anchor in the store newer than those (which a truncated chain forgot).
    """
    result = AuditVerification()
    started = time.perf_counter()
    # 1. Walk the chain and check the head, in one consistent snapshot where possible.
    fresh = not transaction.get_connection().in_atomic_block
    with transaction.atomic():
        if fresh:
            _snapshot()
        _walk(result, chunk_size)
        _check_head(result)
    # 2. Anchors are checked afterwards, against fresh reads: an anchor written during the
    #    walk may attest an event newer than the snapshot.
    if anchors > 0:
        _check_anchors(result, anchors)
    result.seconds = time.perf_counter() - started
    return result


def audit_verify_recorded(
    *, actor: Actor, anchors: int = 10, chunk_size: int = 5000
) -> tuple[AuditVerification, dict[str, Any]]:
    """Verify the chain, then append the outcome to it as an ``audit.verified`` event.

    A failed verification is recorded too: it is the evidence an auditor needs. The event
    comes after the events it attests, so the next verification covers it as well.
    """
    result = audit_verify(anchors=anchors, chunk_size=chunk_size)
    problems = [str(problem) for problem in result.problems]
    with transaction.atomic():
        event = audit_append(
            actor=actor,
            action=AuditAction.AUDIT_VERIFIED,
            target_type="audit_chain",
            target_id=str(result.last_sequence),
            payload={
                "ok": result.ok,
                "checked": result.checked,
                "last_sequence": result.last_sequence,
                "anchors_checked": result.anchors_checked,
                "seconds": round(result.seconds, 3),
                "problem_count": len(problems) + result.unlisted_problems,
                "problems": problems[:RECORDED_PROBLEMS],
            },
        )
    return result, _summary(
        event.sequence, event.occurred_at, event.actor_username, event.payload_json
    )


def last_recorded_verification() -> dict[str, Any] | None:
    """The newest ``audit.verified`` event as the auditor pages show it, or None."""
    event = (
        AuditEvent.objects.filter(action=AuditAction.AUDIT_VERIFIED)
        .order_by("-sequence")
        .values_list("sequence", "occurred_at", "actor_username", "payload_json")
        .first()
    )
    return None if event is None else _summary(*event)


def _summary(sequence: int, occurred_at: Any, actor: str, payload_json: str) -> dict[str, Any]:
    return {
        **json.loads(payload_json),
        "sequence": sequence,
        "verified_at": occurred_at.isoformat(),
        "verified_by": actor or "system",
    }


def _snapshot() -> None:
    # REPEATABLE READ, so appends committed during a long walk cannot make the head look
    # ahead of the events. Inside a caller's transaction, the caller's snapshot rules.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


# PostgreSQL's rendering of a timestamptz in the canonical text ``format_time`` gives.
CANONICAL_TIME_SQL = (
    "to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
)


def canonical_time_sql() -> Func:
    """Return ``occurred_at`` rendered by PostgreSQL as canonical text."""
    return Func(
        F("occurred_at"),
        template=CANONICAL_TIME_SQL.format(column="%(expressions)s"),
        output_field=CharField(),
    )


def _walk(result: AuditVerification, chunk_size: int) -> None:
    digest = ChainHasher().digest
    columns: list[Any] = list(CHAIN_COLUMNS)
    events = AuditEvent.objects.order_by("sequence")
    if connection.vendor == "postgresql":
        # Text straight from the server: parsing 100,000 datetimes a second costs a third.
        events = events.annotate(occurred_text=canonical_time_sql())
        columns[1] = "occurred_text"
    rows = events.values_list(*columns, "hash").iterator(chunk_size=chunk_size)
    expected, prev = 1, GENESIS_HASH
    for row in rows:
        sequence, prev_hash, stored = row[0], row[10], row[11]
        if sequence != expected:
            missing = f"{expected}" if sequence == expected + 1 else f"{expected}..{sequence - 1}"
            result._add(ChainProblem(expected, GAP, f"event(s) {missing} are missing"))
        elif prev_hash != prev:
            result._add(
                ChainProblem(
                    sequence,
                    PREV_HASH_MISMATCH,
                    f"prev_hash {prev_hash[:12]}… does not match the hash of event "
                    f"{sequence - 1} ({prev[:12]}…): an event was replaced or reordered",
                )
            )
        if digest(message_from_row(row[:11])) != stored:
            hint = ""
            if result.checked == 0:
                hint = " (if every event fails, AUDIT_HMAC_KEY is not the key that wrote them)"
            result._add(
                ChainProblem(
                    sequence,
                    HASH_MISMATCH,
                    f"stored hash {stored[:12]}… is not the keyed hash of the event's "
                    f"fields: the event was changed or forged{hint}",
                )
            )
        prev, expected = stored, sequence + 1
        result.checked += 1
    result.last_sequence = expected - 1


def _check_head(result: AuditVerification) -> None:
    head = AuditChainHead.objects.filter(pk=1).values_list("sequence", "hash").first()
    last = result.last_sequence
    if head is None:
        if result.checked:
            result._add(ChainProblem(None, MISSING_HEAD, "events exist but the head row is gone"))
        return
    head_sequence, head_hash = head
    if head_sequence != last:
        if head_sequence > last:
            detail = f"the head is at {head_sequence} but the last event is {last}: events removed"
        else:
            detail = f"events after the head ({head_sequence}) up to {last} were not appended"
        result._add(ChainProblem(min(head_sequence, last) + 1, HEAD_MISMATCH, detail))
        return
    if last:
        last_hash = AuditEvent.objects.filter(sequence=last).values_list("hash", flat=True).get()
        if last_hash != head_hash:
            result._add(ChainProblem(last, HEAD_MISMATCH, "the head's hash is not the last hash"))


def _check_anchors(result: AuditVerification, count: int) -> None:
    # 1. The anchors the chain remembers, newest first.
    recorded = (
        AuditEvent.objects.filter(action=AuditAction.AUDIT_ANCHORED)
        .order_by("-sequence")
        .values_list("payload_json", flat=True)[:count]
    )
    remembered = sorted({int(json.loads(text)["sequence"]) for text in recorded})
    keys = [anchor_key(sequence) for sequence in remembered]
    # 2. Plus any newer anchor in the store: a truncated chain no longer records it.
    store = anchor_store()
    try:
        newer = store.keys_after(keys[-1] if keys else ANCHOR_PREFIX, limit=1000)
        bodies = {key: store.read(key) for key in [*keys, *newer]}
    except AnchorStoreError as exc:
        result._add(ChainProblem(None, ANCHORS_UNAVAILABLE, str(exc)))
        return
    anchors: list[Anchor] = []
    for key, (body, later_writes) in bodies.items():
        if later_writes:
            result._add(
                ChainProblem(
                    None,
                    ANCHOR_OVERWRITTEN,
                    f"{key} has {later_writes} later version(s) or delete marker(s) on top of "
                    "the original, which is the one checked",
                )
            )
        if body is None:
            result._add(ChainProblem(None, ANCHOR_MISSING, f"{key} is recorded but gone"))
            continue
        try:
            anchor = Anchor.from_bytes(body)
        except (ValueError, KeyError, TypeError) as exc:
            result._add(ChainProblem(None, ANCHOR_INVALID, f"{key} is unreadable: {exc}"))
            continue
        if anchor.mac != anchor.expected_mac():
            result._add(
                ChainProblem(anchor.sequence, ANCHOR_INVALID, f"{key} has a wrong MAC (forged?)")
            )
            continue
        anchors.append(anchor)
    # 3. Each anchor must match the event at its sequence.
    hashes = dict(
        AuditEvent.objects.filter(sequence__in=[anchor.sequence for anchor in anchors])
        .values_list("sequence", "hash")
        .iterator()
    )
    for anchor in sorted(anchors, key=lambda item: item.sequence):
        result.anchors_checked += 1
        actual = hashes.get(anchor.sequence)
        if actual is None:
            result._add(
                ChainProblem(
                    anchor.sequence,
                    ANCHOR_BEYOND_CHAIN,
                    f"anchored at {anchor.anchored_at} but no longer in the chain: "
                    "history was truncated",
                )
            )
        elif actual != anchor.hash:
            result._add(
                ChainProblem(
                    anchor.sequence,
                    ANCHOR_MISMATCH,
                    f"anchored hash {anchor.hash[:12]}… ≠ current {actual[:12]}…: "
                    "history was rewritten after it was anchored",
                )
            )
