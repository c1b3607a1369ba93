"""Random personas doing random things never get an output approved without a second person.

A Hypothesis state machine submits requests, runs their jobs, reviews outputs, requests
changes and grants roles, in any order and by anyone; after every step the database must
hold no approved output without an approval by a reviewer other than its requester, and
no review decision by the requester at all.
"""

import contextlib

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from generation.models import GenerationJob, JobStatus, Output, ReviewStatus
from generation.services import job_execute
from governance.approvals.models import Decision, GenerationRequest, ReviewDecision
from governance.approvals.services import (
    request_changes,
    request_create,
    review_decide,
    team_create,
    team_member_add,
)
from governance.roles import Role, role_grant, user_has_role
from tests.governance.approvals.conftest import (  # noqa: F401  (fixtures)
    CHECKLIST,
    VALUES,
    _fresh_model_cache,
    _no_dispatch,
    make_user,
    template_version,
)
from web.errors import SERVICE_ERRORS

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

NAMES = ["ann", "ben", "cat", "dan"]
personas = st.sampled_from(NAMES)


class ApprovalMachine(RuleBasedStateMachine):
    """Everyone starts as a requester in one team; reviewer roles are granted as it goes."""

    approvals = 0  # approved outputs seen over all runs
    template_version = None  # set by the test (a published ``shapes:1``)

    def __init__(self):
        super().__init__()
        # Each run starts from the same database: a savepoint rolled back in teardown.
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        team = team_create(name="crew", title="Crew", created_by=None)
        for name in NAMES:
            team_member_add(team=team, user=make_user(name, Role.REQUESTER), added_by=None)

    def teardown(self):
        ApprovalMachine.approvals += Output.objects.filter(
            review_status=ReviewStatus.APPROVED
        ).count()
        transaction.set_rollback(True)
        self.savepoint.__exit__(None, None, None)

    def user(self, name):
        return get_user_model().objects.get(username=name)

    def pick(self, data, queryset):
        rows = list(queryset.order_by("created_at", "pk"))
        return data.draw(st.sampled_from(rows)) if rows else None

    @rule(name=personas)
    def submit(self, name):
        with contextlib.suppress(*SERVICE_ERRORS):
            request_create(
                requested_by=self.user(name), template_version=self.template_version, values=VALUES
            )

    @rule(data=st.data())
    def generate(self, data):
        job = self.pick(data, GenerationJob.objects.filter(status=JobStatus.QUEUED))
        if job is not None:
            job_execute(job_id=job.id, worker="test", max_batch=8)

    @rule(data=st.data(), name=personas, approve=st.booleans())
    def review(self, data, name, approve):
        output = self.pick(data, Output.objects.all())
        if output is None:
            return
        decision = Decision.APPROVED if approve else Decision.REJECTED
        with contextlib.suppress(*SERVICE_ERRORS):
            review_decide(
                output=output,
                reviewer=self.user(name),
                decision=decision,
                checklist=CHECKLIST if approve else [],
                comment="" if approve else "not quite",
            )

    @rule(data=st.data(), name=personas)
    def ask_for_changes(self, data, name):
        request = self.pick(data, GenerationRequest.objects.all())
        if request is None:
            return
        with contextlib.suppress(*SERVICE_ERRORS):
            request_changes(request=request, by=self.user(name), comment="bluer please")

    @rule(name=personas)
    def grant_reviewer(self, name):
        role_grant(user=self.user(name), role=Role.REVIEWER, granted_by=None)

    @invariant()
    def nobody_decides_their_own_output(self):
        for decision in ReviewDecision.objects.select_related("output__job__request"):
            job = decision.output.job
            requester = job.request.requested_by_id if job.request else job.created_by_id
            assert decision.reviewer_id != requester, decision

    @invariant()
    def every_approved_output_has_a_second_persons_approval(self):
        for output in Output.objects.filter(review_status=ReviewStatus.APPROVED):
            job = output.job
            requester = job.request.requested_by_id if job.request else job.created_by_id
            approvals = ReviewDecision.objects.filter(output=output, decision=Decision.APPROVED)
            assert approvals.exists(), output
            for approval in approvals:
                assert approval.reviewer_id != requester
                assert user_has_role(approval.reviewer, Role.REVIEWER)


def test_no_sequence_of_actions_reaches_an_approval_without_a_second_person(
    template_version,  # noqa: F811
):
    ApprovalMachine.template_version = template_version
    ApprovalMachine.approvals = 0
    run_state_machine_as_test(
        ApprovalMachine,
        settings=settings(
            max_examples=12,
            stateful_step_count=12,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    # The run did reach approvals, so the invariants were tested on real ones.
    assert ApprovalMachine.approvals > 0
