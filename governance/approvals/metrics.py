"""Pilot metrics: is the platform paying off? Read-only, for the pilot dashboard.

For requests made in a date range (in ``TIME_ZONE``), overall and by template and by model
version:

- requests per day;
- approval rate: approved outputs over decided outputs (approved, rejected, changes requested);
- regenerations per approved image: images made by follow-up requests (changes requested or
  resubmitted, i.e. requests with a parent) over approved images;
- median time to an approved image: from an original request to the first approval anywhere
  in its chain of follow-ups.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Min
from django.db.models.functions import TruncDate
from django.utils import timezone

from generation.models import Output, ReviewStatus
from governance.approvals.models import Decision, GenerationRequest, ReviewDecision

MAX_DAYS = 366
_DECIDED = (ReviewStatus.APPROVED, ReviewStatus.REJECTED, ReviewStatus.CHANGES_REQUESTED)


class MetricsRangeError(ValueError):
    """The date range is empty, reversed or too long; ``field`` names the bad bound."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def pilot_metrics(*, since: date, until: date) -> dict[str, Any]:
    """Return the metrics for requests made from ``since`` to ``until`` (both inclusive)."""
    # 1. the range, as aware datetimes in the platform's time zone
    if until < since:
        raise MetricsRangeError("until", "must not be before since")
    if (until - since).days + 1 > MAX_DAYS:
        raise MetricsRangeError("since", f"the range may cover at most {MAX_DAYS} days")
    if until >= date.max:
        raise MetricsRangeError("until", f"must be before {date.max.isoformat()}")
    zone = timezone.get_current_timezone()
    start = datetime.combine(since, time.min, tzinfo=zone)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=zone)
    requests = GenerationRequest.objects.filter(created_at__gte=start, created_at__lt=end)
    # 2. requests per day
    daily = Counter(
        {
            row["day"]: row["n"]
            for row in requests.annotate(day=TruncDate("created_at", tzinfo=zone))
            .values("day")
            .annotate(n=Count("id"))
        }
    )
    days = [since + timedelta(days=i) for i in range((until - since).days + 1)]
    # 3. the requests with their group keys, and the outputs of each
    rows = list(
        requests.values(
            "id",
            "parent_id",
            "created_at",
            "template_version__template__name",
            "model_version__model__name",
            "model_version__version",
        )
    )
    keys = {
        row["id"]: (
            row["template_version__template__name"],
            f"{row['model_version__model__name']}:{row['model_version__version']}",
        )
        for row in rows
    }
    outputs: dict[Any, Counter[str]] = defaultdict(Counter)
    for row in (
        Output.objects.filter(job__request__in=requests)
        .values("job__request_id", "review_status")
        .annotate(n=Count("id"))
    ):
        outputs[row["job__request_id"]][row["review_status"]] += row["n"]
    # 4. chains: every request's original request, and each chain's first approval
    parents = dict(
        GenerationRequest.objects.filter(created_at__gte=start).values_list("id", "parent_id")
    )
    first_approval = dict(
        ReviewDecision.objects.filter(request_id__in=parents, decision=Decision.APPROVED)
        .values("request_id")
        .annotate(at=Min("decided_at"))
        .values_list("request_id", "at")
    )
    approved_at: dict[Any, datetime] = {}
    for request_id, at in first_approval.items():
        root = _root(request_id, parents)
        if root not in approved_at or at < approved_at[root]:
            approved_at[root] = at
    # 5. the metrics of each group
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {
        "overall": defaultdict(list),
        "template": defaultdict(list),
        "model_version": defaultdict(list),
    }
    for row in rows:
        template, model_version = keys[row["id"]]
        groups["overall"][""].append(row)
        groups["template"][template].append(row)
        groups["model_version"][model_version].append(row)

    def summary(members: list[dict[str, Any]]) -> dict[str, Any]:
        return _summary(members, outputs, approved_at)

    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "per_day": [{"date": day.isoformat(), "requests": daily.get(day, 0)} for day in days],
        "overall": summary(groups["overall"][""]),
        "by_template": [
            {"key": key, **summary(members)} for key, members in sorted(groups["template"].items())
        ],
        "by_model_version": [
            {"key": key, **summary(members)}
            for key, members in sorted(groups["model_version"].items())
        ],
    }


def _root(request_id: Any, parents: dict[Any, Any]) -> Any:
    seen = set()
    while parents.get(request_id) is not None and request_id not in seen:
        seen.add(request_id)
        request_id = parents[request_id]
    return request_id


def _summary(
    members: list[dict[str, Any]],
    outputs: dict[Any, Counter[str]],
    approved_at: dict[Any, datetime],
) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    regenerations = 0
    waits = []
    for row in members:
        made = outputs.get(row["id"], Counter())
        counts.update(made)
        if row["parent_id"] is not None:
            regenerations += sum(made.values())
        elif row["id"] in approved_at:
            waits.append((approved_at[row["id"]] - row["created_at"]).total_seconds() / 3600)
    images = sum(counts.values())
    decided = sum(counts[status] for status in _DECIDED)
    approved = counts[ReviewStatus.APPROVED]
    return {
        "requests": len(members),
        "images": images,
        "decided": decided,
        "approved": approved,
        "approval_rate": round(approved / decided, 4) if decided else None,
        "regenerations": regenerations,
        "regenerations_per_approved": round(regenerations / approved, 4) if approved else None,
        "median_hours_to_approval": round(statistics.median(waits), 4) if waits else None,
    }
