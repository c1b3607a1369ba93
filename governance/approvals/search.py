"""Auditor search over outputs and its streamed CSV / JSON Lines export.

Search by person (requester or reviewer), template, model version, review status, date
range and caption text. The export reads keyset batches, so its memory stays flat however
many rows match, and it is audited when it starts and when it ends. Events themselves are
searched and exported with ``governance.audit.services.audit_search``/``audit_export``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from generation.models import Output, OutputCheck, ReviewStatus
from governance.approvals.models import ReviewDecision
from governance.approvals.selectors import visible_outputs
from governance.approvals.services import ApprovalInputError
from governance.audit.actions import AuditAction
from governance.audit.services import audit_append

EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_CHUNK_CHARS = 64 * 1024
EXPORT_COLUMNS = (
    "output",
    "created_at",
    "request",
    "team",
    "requested_by",
    "template_version",
    "caption",
    "model_version",
    "seed",
    "sampling",
    "sha256",
    "pixels_sha256",
    "review_status",
    "last_decision",
    "last_reviewer",
    "last_decided_at",
    "flagged",
    "purged_at",
)
_VALUES = (
    "pk",
    "created_at",
    "job__request_id",
    "job__request__team__name",
    "job__request__requested_by__username",
    "job__created_by__username",
    "job__request__template_version__template__name",
    "job__request__template_version__number",
    "caption",
    "model_version__model__name",
    "model_version__version",
    "seed",
    "sampling",
    "sha256",
    "pixels_sha256",
    "review_status",
    "last_decision",
    "last_reviewer",
    "last_decided_at",
    "flagged",
    "purged_at",
)
SEARCH_FIELDS = (
    "person",
    "template",
    "model_version",
    "review_status",
    "since",
    "until",
    "caption",
)


def output_search(
    *,
    viewer: AbstractBaseUser,
    person: str | None = None,
    template: str | None = None,
    model_version: str | None = None,
    review_status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    caption: str | None = None,
) -> QuerySet[Output]:
    """Return the outputs the viewer may read that match every given filter.

    ``person`` is a username: the requester or any reviewer; ``template`` is ``name`` or
    ``name:number``; ``model_version`` is ``model`` or ``model:version``; ``since`` is
    inclusive, ``until`` exclusive (creation time); ``caption`` matches text, ignoring case.
    """
    outputs = visible_outputs(viewer)
    if person:
        reviewed = ReviewDecision.objects.filter(output=OuterRef("pk"), reviewer__username=person)
        outputs = outputs.filter(
            Q(job__request__requested_by__username=person)
            | Q(job__request__isnull=True, job__created_by__username=person)
            | Exists(reviewed)
        )
    if template:
        name, _, number = template.partition(":")
        outputs = outputs.filter(job__request__template_version__template__name=name)
        if number:
            outputs = outputs.filter(
                job__request__template_version__number=_int("template", number)
            )
    if model_version:
        name, _, number = model_version.partition(":")
        outputs = outputs.filter(model_version__model__name=name)
        if number:
            outputs = outputs.filter(model_version__version=_int("model_version", number))
    if review_status:
        if review_status not in ReviewStatus.values:
            raise ApprovalInputError(
                {"review_status": f"must be one of {', '.join(ReviewStatus.values)}"}
            )
        outputs = outputs.filter(review_status=review_status)
    if since is not None:
        outputs = outputs.filter(created_at__gte=_aware("since", since))
    if until is not None:
        outputs = outputs.filter(created_at__lt=_aware("until", until))
    if caption:
        outputs = outputs.filter(caption__icontains=caption)
    return outputs


def output_export(
    *,
    outputs: QuerySet[Output],
    fmt: str,
    actor: AbstractBaseUser | None,
    filters: Mapping[str, Any] | None = None,
    batch_size: int = 500,
) -> Iterator[str]:
    """Return an iterator of CSV or JSON Lines chunks of the outputs, read in keyset batches.

    Audited: ``outputs.exported`` when it starts (who, filters) and when it ends (rows,
    completed or abandoned).
    """
    if fmt not in EXPORT_FORMATS:
        raise ApprovalInputError({"format": f"must be one of {', '.join(EXPORT_FORMATS)}"})
    if not 1 <= batch_size <= 10_000:
        raise ApprovalInputError({"batch_size": "must be between 1 and 10000"})
    described = {key: _describe(value) for key, value in (filters or {}).items()}
    return _stream(outputs, fmt, actor, described, batch_size)


def _stream(
    outputs: QuerySet[Output],
    fmt: str,
    actor: AbstractBaseUser | None,
    filters: dict[str, Any],
    batch_size: int,
) -> Iterator[str]:
    record = {"format": fmt, "filters": filters}
    _record(actor, {**record, "status": "started"})
    count = 0
    try:
        if fmt == "csv":
            yield _CSV.writerow(EXPORT_COLUMNS)
        pending: list[str] = []
        size = 0
        for row in _rows(outputs, batch_size):
            line = _csv_line(row) if fmt == "csv" else _jsonl_line(row)
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
        _record(actor, {**record, "status": "abandoned", "count": count})
        raise
    _record(actor, {**record, "status": "completed", "count": count})


def _rows(outputs: QuerySet[Output], batch_size: int) -> Iterator[dict[str, Any]]:
    """Yield one dict per output, reading keyset batches ordered by primary key."""
    latest = ReviewDecision.objects.filter(output=OuterRef("pk")).order_by("-decided_at", "-id")
    annotated = outputs.annotate(
        last_decision=Subquery(latest.values("decision")[:1]),
        last_reviewer=Subquery(latest.values("reviewer__username")[:1]),
        last_decided_at=Subquery(latest.values("decided_at")[:1]),
        flagged=Exists(OutputCheck.objects.filter(output=OuterRef("pk"), flagged=True)),
    )
    last = None
    while True:
        batch = annotated.order_by("pk")
        if last is not None:
            batch = batch.filter(pk__gt=last)
        rows = list(batch.values_list(*_VALUES)[:batch_size])
        if not rows:
            return
        last = rows[-1][0]
        for row in rows:
            item = dict(zip(_VALUES, row, strict=True))
            template = item.pop("job__request__template_version__template__name")
            number = item.pop("job__request__template_version__number")
            model = item.pop("model_version__model__name")
            version = item.pop("model_version__version")
            yield {
                "output": str(item["pk"]),
                "created_at": _time(item["created_at"]),
                "request": str(item["job__request_id"]) if item["job__request_id"] else None,
                "team": item["job__request__team__name"],
                "requested_by": item["job__request__requested_by__username"]
                or item["job__created_by__username"],
                "template_version": f"{template}:{number}" if template else None,
                "caption": item["caption"],
                "model_version": f"{model}:{version}",
                "seed": item["seed"],
                "sampling": item["sampling"],
                "sha256": item["sha256"],
                "pixels_sha256": item["pixels_sha256"],
                "review_status": item["review_status"],
                "last_decision": item["last_decision"],
                "last_reviewer": item["last_reviewer"],
                "last_decided_at": _time(item["last_decided_at"]),
                "flagged": bool(item["flagged"]),
                "purged_at": _time(item["purged_at"]),
            }


def _record(actor: AbstractBaseUser | None, payload: dict[str, Any]) -> None:
    with transaction.atomic():
        audit_append(
            actor=actor,
            action=AuditAction.OUTPUTS_EXPORTED,
            target_type="outputs",
            target_id="",
            payload=payload,
        )


class _Echo:
    """A file-like object whose write returns the line, so csv.writer formats one row."""

    def write(self, line: str) -> str:
        return line


_CSV = csv.writer(_Echo(), lineterminator="\n")


def _csv_line(row: dict[str, Any]) -> str:
    cells = [
        json.dumps(row[name], sort_keys=True) if name == "sampling" else row[name]
        for name in EXPORT_COLUMNS
    ]
    return _CSV.writerow(["" if cell is None else cell for cell in cells])  # type: ignore[no-any-return]


def _jsonl_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _aware(field: str, moment: object) -> datetime:
    if not isinstance(moment, datetime):
        raise ApprovalInputError({field: f"must be a datetime, got {type(moment).__name__}"})
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _int(field: str, text: str) -> int:
    if not text.isdigit():
        raise ApprovalInputError({field: f"version number {text!r} is not a whole number"})
    return int(text)


def _describe(value: Any) -> Any:
    if isinstance(value, datetime):
        return _time(_aware("filter", value))
    if value is None or isinstance(value, int | str | bool):
        return value
    return str(value)
