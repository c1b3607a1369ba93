"""The lineage of one output, for auditors: every step from request to review, with who and when.

request → template version → rendered caption → model version and weight hashes → seed and
settings → output SHA-256 → machine checks → every review decision → retention and replays,
followed by the audit events of the request, the job and the output. Plain JSON-ready data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q

from generation.models import Output
from generation.provenance import weights_digest
from governance.audit.models import AuditEvent


def output_lineage(*, output: Output) -> dict[str, Any]:
    """Return the output's lineage as a JSON-ready dict (callers check who may read it)."""
    output = (
        Output.objects.select_related(
            "job__created_by",
            "job__request__team",
            "job__request__requested_by",
            "job__request__parent",
            "job__request__changes_requested_by",
            "job__request__legal_hold_by",
            "job__request__template_version__template",
            "job__request__template_version__created_by",
            "job__request__template_version__published_by",
            "model_version__model",
            "model_version__registered_by",
        )
        .prefetch_related("checks", "review_decisions__reviewer", "replays")
        .get(pk=output.pk)
    )
    job = output.job
    request = job.request
    version = request.template_version if request else None
    weights = dict(output.model_version.weights.values_list("role", "sha256"))
    return {
        "output": {
            "id": str(output.pk),
            "sha256": output.sha256,
            "pixels_sha256": output.pixels_sha256,
            "perceptual_hash": output.perceptual_hash,
            "storage_key": output.storage_key,
            "size_bytes": output.size_bytes,
            "width": output.width,
            "height": output.height,
            "created_at": _time(output.created_at),
            "review_status": output.review_status,
        },
        "request": _request(request) if request else None,
        "template_version": (
            {
                "id": version.pk,
                "name": str(version),
                "status": version.status,
                "pattern": version.pattern,
                "checklist": version.checklist,
                "written_by": _who(version.created_by),
                "published_by": _who(version.published_by),
                "published_at": _time(version.published_at),
            }
            if version
            else None
        ),
        "caption": {
            "text": output.caption,
            "language": request.language if request else None,
            "values_used": request.values_used if request else None,
            "token_count": job.caption_tokens,
            "truncated": job.caption_truncated,
        },
        "model": {
            "version": str(output.model_version),
            "reference": request.model_reference if request else job.model_reference,
            "weights": weights,
            "weights_sha256": weights_digest(weights),
            "registered_by": _who(output.model_version.registered_by),
            "registered_at": _time(output.model_version.created_at),
        },
        "generation": {
            "job": str(job.pk),
            "variation": job.variation,
            "seed": output.seed,
            "sampling": output.sampling,
            "created_by": _who(job.created_by),
            "created_at": _time(job.created_at),
            "worker": job.worker,
            "attempts": job.attempts,
            "started_at": _time(job.started_at),
            "finished_at": _time(job.finished_at),
        },
        "checks": [
            {
                "checker": check.checker,
                "version": check.version,
                "outcome": check.outcome,
                "threshold": check.threshold,
                "value": check.value,
                "flagged": check.flagged,
                "detail": check.detail,
                "at": _time(check.created_at),
            }
            for check in output.checks.all()
        ],
        "reviews": [
            {
                "decision": decision.decision,
                "reviewer": _who(decision.reviewer),
                "at": _time(decision.decided_at),
                "checklist": decision.checklist,
                "comment": decision.comment,
                "flagged": decision.flagged,
                "flagged_reason": decision.flagged_reason,
                "child_request": str(decision.child_request_id)
                if decision.child_request_id
                else None,
            }
            for decision in output.review_decisions.all()
        ],
        "retention": {
            "purged_at": _time(output.purged_at),
            "object_deleted_at": _time(output.object_deleted_at),
            "legal_hold": bool(request and request.legal_hold),
        },
        "replays": [
            {
                "outcome": replay.outcome,
                "max_abs_diff": replay.max_abs_diff,
                "mean_abs_diff": replay.mean_abs_diff,
                "device": replay.device,
                "at": _time(replay.created_at),
            }
            for replay in output.replays.all()
        ],
        "events": _events(output, job, request),
    }


def _request(request: Any) -> dict[str, Any]:
    return {
        "id": str(request.pk),
        "team": request.team.name,
        "requested_by": _who(request.requested_by),
        "created_at": _time(request.created_at),
        "values": request.values,
        "variations": request.variations,
        "parent": str(request.parent_id) if request.parent_id else None,
        "changes_requested_by": _who(request.changes_requested_by),
        "children": [str(pk) for pk in request.children.values_list("pk", flat=True)],
        "legal_hold": request.legal_hold,
        "legal_hold_by": _who(request.legal_hold_by),
        "legal_hold_at": _time(request.legal_hold_at),
    }


def _events(output: Output, job: Any, request: Any) -> list[dict[str, Any]]:
    targets = Q(target_type="output", target_id=str(output.pk)) | Q(
        target_type="job", target_id=str(job.pk)
    )
    if request is not None:
        targets |= Q(target_type="generation_request", target_id=str(request.pk))
    return [
        {
            "sequence": event.sequence,
            "at": _time(event.occurred_at),
            "action": event.action,
            "actor": event.actor_username or None,
            "target": f"{event.target_type}:{event.target_id}",
        }
        for event in AuditEvent.objects.filter(targets).order_by("sequence")
    ]


def _who(user: Any) -> str | None:
    return user.get_username() if user is not None else None


def _time(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
