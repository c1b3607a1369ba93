"""Pilot metrics: approval rate, regenerations per approved image, time to approval."""

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.approvals.metrics import MetricsRangeError, pilot_metrics
from governance.approvals.models import ReviewDecision
from governance.approvals.services import request_changes, review_decide
from tests.governance.approvals.conftest import CHECKLIST

pytestmark = pytest.mark.django_db


def test_a_chain_of_requests_counts_its_regenerations_and_time_to_approval(
    submit, generate, reviewer, s3_bucket
):
    first = submit(variations=2, seeds=[1, 2])
    generate(first)
    child = request_changes(request=first, by=reviewer, comment="bluer")
    approved, rejected = generate(child)
    review_decide(output=approved, reviewer=reviewer, decision="approved", checklist=CHECKLIST)
    review_decide(output=rejected, reviewer=reviewer, decision="rejected", comment="no")
    today = timezone.localdate()
    metrics = pilot_metrics(since=today - timedelta(days=6), until=today)
    overall = metrics["overall"]
    assert (overall["requests"], overall["images"], overall["approved"]) == (2, 4, 1)
    # decided: 2 changes requested, 1 approved, 1 rejected
    assert overall["approval_rate"] == 0.25
    assert overall["regenerations"] == 2 and overall["regenerations_per_approved"] == 2.0
    decided_at = ReviewDecision.objects.get(decision="approved").decided_at
    hours = (decided_at - first.created_at).total_seconds() / 3600
    assert overall["median_hours_to_approval"] == pytest.approx(hours, abs=1e-3)
    assert [row["key"] for row in metrics["by_template"]] == ["shapes"]
    assert [row["key"] for row in metrics["by_model_version"]] == ["demo:1"]
    assert metrics["per_day"][-1] == {"date": today.isoformat(), "requests": 2}


def test_an_empty_range_has_no_rates(db):
    today = timezone.localdate()
    overall = pilot_metrics(since=today, until=today)["overall"]
    assert overall["requests"] == 0 and overall["approval_rate"] is None


def test_a_reversed_or_too_long_range_is_refused(db):
    today = timezone.localdate()
    with pytest.raises(MetricsRangeError) as reversed_range:
        pilot_metrics(since=today, until=today - timedelta(days=1))
    assert reversed_range.value.field == "until"
    with pytest.raises(MetricsRangeError):
        pilot_metrics(since=today - timedelta(days=400), until=today)
