"""The lineage of one generated output, from request to review, with who and when."""

import json

import pytest
from django.core.management import call_command

from generation.storage import get_store, sha256_hex
from governance.approvals.lineage import output_lineage
from governance.approvals.services import review_decide

from .conftest import CHECKLIST

pytestmark = pytest.mark.django_db


def test_the_lineage_of_a_generated_output_reads_from_request_to_review(
    output, reviewer, model_version
):
    review_decide(output=output, reviewer=reviewer, decision="approved", checklist=CHECKLIST)
    lineage = output_lineage(output=output)
    request = output.job.request
    assert lineage["request"]["id"] == str(request.pk)
    assert (lineage["request"]["requested_by"], lineage["request"]["team"]) == ("rita", "brand")
    assert lineage["template_version"]["name"] == "shapes v1"
    assert lineage["template_version"]["published_by"] == "pia"
    assert lineage["caption"]["text"] == "a large red circle, white background"
    assert lineage["caption"]["token_count"] == request.lint["token_count"]
    weights = dict(model_version.weights.values_list("role", "sha256"))
    assert lineage["model"] == {
        "version": "demo:1",
        "reference": "demo@production",
        "weights": weights,
        "weights_sha256": lineage["model"]["weights_sha256"],
        "registered_by": None,
        "registered_at": model_version.created_at.isoformat(),
    }
    assert (lineage["generation"]["seed"], lineage["generation"]["worker"]) == (7, "test")
    assert lineage["generation"]["sampling"] == model_version.sampling_defaults
    stored = get_store().get(output.storage_key)
    assert lineage["output"]["sha256"] == sha256_hex(stored)
    assert {c["checker"] for c in lineage["checks"]} == {
        "degenerate", "near_duplicate", "caption_alignment",
    }  # fmt: skip
    (review,) = lineage["reviews"]
    assert (review["decision"], review["reviewer"]) == ("approved", "rory")
    assert review["at"] is not None
    actions = [event["action"] for event in lineage["events"]]
    assert actions == [
        "request.created",
        "job.created",
        "job.succeeded",
        "output.created",
        "output.check_recorded",
        "review.approved",
    ]
    assert lineage["events"][0]["actor"] == "rita"
    assert lineage["events"][-1]["actor"] == "rory"
    json.dumps(lineage)  # JSON-ready as it is


def test_show_lineage_prints_it_as_json(output, capsys):
    call_command("show_lineage", str(output.pk))
    printed = json.loads(capsys.readouterr().out)
    assert printed["output"]["id"] == str(output.pk)
    assert printed["request"]["id"] == str(output.job.request_id)
