"""Generation requests: a published template version, values and variations become jobs."""

import pytest

from generation.models import GenerationJob
from governance.approvals.models import GenerationRequest
from governance.approvals.services import ApprovalInputError, request_create
from governance.captions.services import lint_term_create, template_version_create
from governance.errors import RoleRequired
from governance.registry.services import alias_move, model_version_register, sources_from_directory

from .conftest import VALUES

pytestmark = pytest.mark.django_db


def test_a_request_renders_the_caption_and_queues_one_job_per_variation_with_its_own_seed(
    submit, requester, team, template_version, model_version, audit_trail
):
    request = submit(variations=3, seeds=[11, 12, 13])
    assert request.caption == "a large red circle, white background"
    assert (request.team, request.requested_by, request.model_version) == (
        team, requester, model_version
    )  # fmt: skip
    assert request.model_reference == "demo@production"
    assert request.values_used["background"] == {
        "value": "white", "source": "default", "label": "white"
    }  # fmt: skip
    jobs = list(request.jobs.order_by("variation"))
    assert [(job.variation, job.seed, job.caption) for job in jobs] == [
        (0, 11, request.caption), (1, 12, request.caption), (2, 13, request.caption),
    ]  # fmt: skip
    assert {job.model_version_id for job in jobs} == {model_version.pk}
    ((actor, payload),) = audit_trail("request.created", request.pk)
    assert actor == "rita"
    assert payload["template_version"] == "shapes v1"
    assert payload["seeds"] == [11, 12, 13]
    assert [p["variation"] for _, p in audit_trail("job.created")] == [0, 1, 2]


def test_seeds_are_drawn_distinct_when_not_given(submit):
    request = submit(variations=4)
    seeds = list(request.jobs.values_list("seed", flat=True))
    assert len(set(seeds)) == 4


def test_the_alias_is_resolved_at_submission_and_later_moves_do_not_change_the_request(
    submit, model_version, tiny_checkpoint_dir
):
    request = submit()
    newer = model_version_register(
        model_name="demo", sources=sources_from_directory(tiny_checkpoint_dir), registered_by=None
    )
    alias_move(
        model_name="demo", alias="candidate", version=newer.version, moved_by=None, reason="t"
    )
    assert GenerationJob.objects.get(request=request).model_version_id == model_version.pk


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"values": {**VALUES, "colour": "green"}}, "values.colour"),
        ({"values": {"size": "large", "colour": "red"}}, "values.shape"),
        ({"values": {**VALUES, "mood": "happy"}}, "values.mood"),
        ({"variations": 0}, "variations"),
        ({"variations": 17}, "variations"),
        ({"variations": 2, "seeds": [1]}, "seeds"),
        ({"variations": 2, "seeds": [5, 5]}, "seeds"),
        ({"language": "fr"}, "language"),
    ],
)
def test_bad_requests_are_refused_naming_the_field_and_write_nothing(
    submit, overrides, field, audit_trail
):
    with pytest.raises(ApprovalInputError) as refused:
        submit(**overrides)
    assert field in refused.value.errors
    assert GenerationRequest.objects.count() == 0
    assert GenerationJob.objects.count() == 0
    assert audit_trail("request.created") == []


def test_a_japanese_label_renders_the_english_value(submit):
    request = submit(values={**VALUES, "colour": "青"}, language="ja")
    assert request.caption == "a large blue circle, white background"
    assert request.values_used["colour"]["label"] == "青"


def test_an_unpublished_template_version_is_refused(submit, template_version, requester):
    draft = template_version_create(
        template=template_version.template, created_by=requester, based_on=template_version
    )
    with pytest.raises(ApprovalInputError) as refused:
        submit(template_version=draft)
    assert "only published versions run" in refused.value.errors["template_version"]


def test_a_caption_with_a_lint_error_is_refused(submit):
    lint_term_create(kind="banned", term="cheap", reason="brand", created_by=None)
    with pytest.raises(ApprovalInputError) as refused:
        submit(values={**VALUES, "shape": "cheap circle"})
    assert "cheap" in refused.value.errors["caption"]
    assert GenerationRequest.objects.count() == 0


def test_only_requesters_submit_and_only_for_their_own_team(
    submit, outsider, other_team, template_version
):
    with pytest.raises(RoleRequired):
        submit(requested_by=outsider)
    with pytest.raises(ApprovalInputError) as refused:
        submit(team=other_team)
    assert "not a member of team retail" in refused.value.errors["team"]


def test_a_requester_in_no_team_is_told_so(template_version, outsider):
    from governance.roles import Role, role_grant

    role_grant(user=outsider, role=Role.REQUESTER, granted_by=None)
    with pytest.raises(ApprovalInputError) as refused:
        request_create(requested_by=outsider, template_version=template_version, values=VALUES)
    assert refused.value.errors["team"] == "oscar belongs to no team"


def test_a_request_is_immutable_except_its_legal_hold(submit):
    from governance.approvals.models import ImmutableRecordError

    request = submit()
    request.caption = "something else"
    with pytest.raises(ImmutableRecordError, match="caption"):
        request.save()


def test_the_database_refuses_changing_a_requests_content_behind_the_services(submit):
    from django.db import ProgrammingError, transaction

    request = submit()
    with pytest.raises(ProgrammingError, match="Cannot update"), transaction.atomic():
        GenerationRequest.objects.filter(pk=request.pk).update(caption="rewritten")
