"""Review decisions: checklists, comments, flagged outputs, bulk approval, request changes."""

import pytest

from generation.models import ReviewStatus
from governance.approvals.models import Decision, GenerationRequest, ReviewDecision
from governance.approvals.services import (
    ApprovalInputError,
    request_changes,
    review_bulk_approve,
    review_decide,
)
from governance.errors import InvalidTransition, RoleRequired, SelfApprovalForbidden
from governance.roles import Role, role_grant

from .conftest import CHECKLIST, VALUES

pytestmark = pytest.mark.django_db


def test_a_reviewer_approves_with_every_checklist_item_ticked(output, reviewer, audit_trail):
    decision = review_decide(
        output=output, reviewer=reviewer, decision="approved", checklist=CHECKLIST
    )
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.APPROVED
    assert (decision.reviewer, decision.checklist) == (reviewer, dict.fromkeys(CHECKLIST, True))
    ((actor, payload),) = audit_trail("review.approved", output.pk)
    assert actor == "rory"
    assert payload["checklist"] == dict.fromkeys(CHECKLIST, True)
    assert payload["request"] == str(output.job.request_id)


def test_approval_with_an_unticked_item_is_refused_naming_it(output, reviewer, audit_trail):
    with pytest.raises(ApprovalInputError) as refused:
        review_decide(
            output=output, reviewer=reviewer, decision="approved", checklist=CHECKLIST[:1]
        )
    assert CHECKLIST[1] in refused.value.errors["checklist"]
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.PENDING
    assert audit_trail("review.approved") == []


def test_a_tick_that_is_not_on_the_checklist_is_refused(output, reviewer):
    with pytest.raises(ApprovalInputError, match="not on this checklist: looks nice"):
        review_decide(
            output=output, reviewer=reviewer, decision="approved",
            checklist=[*CHECKLIST, "looks nice"],
        )  # fmt: skip


def test_a_rejection_needs_a_comment_and_is_audited_with_it(output, reviewer, audit_trail):
    with pytest.raises(ApprovalInputError, match="a rejection needs a comment"):
        review_decide(output=output, reviewer=reviewer, decision="rejected")
    review_decide(output=output, reviewer=reviewer, decision="rejected", comment="wrong red")
    output.refresh_from_db()
    assert output.review_status == ReviewStatus.REJECTED
    assert audit_trail("review.rejected", output.pk)[0][1]["comment"] == "wrong red"


def test_reviewer_cannot_approve_own_request(output, requester, audit_trail):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    with pytest.raises(SelfApprovalForbidden, match=r"rita requested output .* cannot review it"):
        review_decide(output=output, reviewer=requester, decision="approved", checklist=CHECKLIST)
    with pytest.raises(SelfApprovalForbidden):
        review_decide(output=output, reviewer=requester, decision="rejected", comment="x")
    assert ReviewDecision.objects.count() == 0
    assert audit_trail("review.approved") == audit_trail("review.rejected") == []


def test_someone_without_the_reviewer_role_cannot_decide(output, outsider):
    with pytest.raises(RoleRequired, match="reviewing an output needs the reviewer role"):
        review_decide(output=output, reviewer=outsider, decision="approved", checklist=CHECKLIST)


def test_an_approval_can_be_withdrawn_but_a_rejection_is_final(output, reviewer):
    review_decide(output=output, reviewer=reviewer, decision="approved", checklist=CHECKLIST)
    review_decide(output=output, reviewer=reviewer, decision="rejected", comment="recalled")
    with pytest.raises(InvalidTransition, match="is rejected; it cannot become approved"):
        review_decide(output=output, reviewer=reviewer, decision="approved", checklist=CHECKLIST)
    assert list(output.review_decisions.values_list("decision", flat=True)) == [
        Decision.APPROVED, Decision.REJECTED,
    ]  # fmt: skip


def test_decisions_are_append_only(output, reviewer):
    from governance.approvals.models import ImmutableRecordError

    decision = review_decide(output=output, reviewer=reviewer, decision="rejected", comment="no")
    decision.comment = "yes"
    with pytest.raises(ImmutableRecordError):
        decision.save()


@pytest.fixture
def flagged_output(submit, generate, output, reviewer):
    """A second output with the same caption and seed as a rejected one: a near-duplicate."""
    review_decide(output=output, reviewer=reviewer, decision="rejected", comment="off-brand")
    duplicate = generate(submit(seeds=[7]))[0]
    assert duplicate.checks.get(checker="near_duplicate").flagged
    return duplicate


def test_approving_a_flagged_output_needs_a_reason_which_is_audited(
    flagged_output, reviewer, audit_trail
):
    with pytest.raises(ApprovalInputError) as refused:
        review_decide(
            output=flagged_output, reviewer=reviewer, decision="approved", checklist=CHECKLIST
        )
    assert "flagged by a machine check" in refused.value.errors["flagged_reason"]
    review_decide(
        output=flagged_output, reviewer=reviewer, decision="approved", checklist=CHECKLIST,
        flagged_reason="the client asked for the same picture again",
    )  # fmt: skip
    ((_, payload),) = audit_trail("review.approved", flagged_output.pk)
    assert payload["flagged"] is True
    assert payload["flagged_reason"] == "the client asked for the same picture again"


def test_the_review_queue_marks_flagged_outputs_and_leaves_out_the_reviewers_own(
    flagged_output, reviewer, requester
):
    from governance.approvals.selectors import review_queue

    queue = list(review_queue(reviewer))
    assert [(o.pk, o.flagged) for o in queue] == [(flagged_output.pk, True)]
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    assert list(review_queue(requester)) == []


def test_bulk_approval_writes_one_decision_and_one_event_per_output(
    submit, generate, reviewer, s3_bucket, audit_trail
):
    outputs = generate(submit(variations=3, seeds=[1, 2, 3]))
    decisions = review_bulk_approve(outputs=outputs, reviewer=reviewer, checklist=CHECKLIST)
    assert [d.output_id for d in decisions] == [o.pk for o in outputs]
    assert ReviewDecision.objects.filter(decision="approved").count() == 3
    event_decisions = sorted(
        payload["decision_id"] for _, payload in audit_trail("review.approved")
    )
    assert event_decisions == sorted(decision.pk for decision in decisions)


def test_bulk_approval_is_all_or_nothing_when_one_output_is_the_reviewers_own(
    output, submit, generate, reviewer, audit_trail
):
    from governance.approvals.services import team_member_add

    role_grant(user=reviewer, role=Role.REQUESTER, granted_by=None)
    team_member_add(team=output.job.request.team, user=reviewer, added_by=None)
    own = generate(submit(requested_by=reviewer, seeds=[99]))[0]
    with pytest.raises(SelfApprovalForbidden):
        review_bulk_approve(outputs=[output, own], reviewer=reviewer, checklist=CHECKLIST)
    assert ReviewDecision.objects.count() == 0
    assert audit_trail("review.approved") == []


def test_request_changes_regenerates_a_linked_child_with_new_seeds(
    submit, generate, reviewer, requester, s3_bucket, audit_trail
):
    parent = submit(variations=2, seeds=[1, 2])
    outputs = generate(parent)
    child = request_changes(
        request=parent, by=reviewer, comment="make it blue", values={"colour": "blue"}
    )
    assert (child.parent, child.requested_by, child.changes_requested_by) == (
        parent, requester, reviewer
    )  # fmt: skip
    assert child.caption == "a large blue circle, white background"
    assert child.variations == 2
    assert not set(child.jobs.values_list("seed", flat=True)) & {1, 2}
    for output in outputs:
        output.refresh_from_db()
        assert output.review_status == ReviewStatus.CHANGES_REQUESTED
        assert output.review_decisions.get().child_request == child
    ((_, payload),) = audit_trail("request.changes_requested", parent.pk)
    assert payload["child"] == str(child.pk)
    assert len(audit_trail("review.changes_requested")) == 2
    assert audit_trail("request.created", child.pk)[0][0] == "rita"


def test_the_requester_cannot_request_changes_on_their_own_request(submit, requester):
    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    parent = submit()
    with pytest.raises(SelfApprovalForbidden):
        request_changes(request=parent, by=requester, comment="again")
    assert GenerationRequest.objects.count() == 1


def test_a_requester_resubmits_with_new_values_as_a_child_of_the_first_request(submit):
    parent = submit()
    child = submit(values={**VALUES, "size": "small"}, parent=parent)
    assert child.parent == parent
    assert list(parent.children.all()) == [child]
