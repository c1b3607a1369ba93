"""Who may see which requests, jobs and outputs, and which outputs may leave the platform.

Every reader (API, web pages, admin, commands) filters through these querysets:

- staff, auditors and reviewers see everything (reviewers work one review desk for every
  team; separation of duties, not visibility, keeps them off their own requests);
- everyone else sees the requests of the teams they belong to, and jobs they made;
- only approved, unpurged outputs are released for download to requesters.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, Q, QuerySet

from generation.models import GenerationJob, Output, OutputCheck, ReviewStatus
from governance.approvals.models import GenerationRequest, TeamMembership
from governance.roles import Role, user_has_role, user_roles

User = AbstractBaseUser | AnonymousUser

# The roles that read everything, besides staff.
SEE_EVERYTHING_ROLES = frozenset({Role.AUDITOR.value, Role.REVIEWER.value})


def sees_everything(user: User | None) -> bool:
    """Staff, auditors and reviewers read every request, job and output."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_staff or SEE_EVERYTHING_ROLES & user_roles(user))


def _team_ids(user: User) -> Any:
    return TeamMembership.objects.filter(user_id=user.pk).values("team_id")


def visible_requests(user: User | None) -> QuerySet[GenerationRequest]:
    """Requests the user may read: everything for the privileged, else their teams' requests."""
    requests = GenerationRequest.objects.select_related(
        "team", "requested_by", "template_version__template", "model_version__model"
    )
    if sees_everything(user):
        return requests
    if user is None or not user.is_authenticated:
        return requests.none()
    return requests.filter(team_id__in=_team_ids(user))


def _jobs() -> QuerySet[GenerationJob]:
    return GenerationJob.objects.select_related("model_version__model", "created_by", "output")


def visible_jobs(user: User | None) -> QuerySet[GenerationJob]:
    """Jobs the user may read: their own, those of their teams' requests, or all."""
    jobs = _jobs()
    if sees_everything(user):
        return jobs
    if user is None or not user.is_authenticated:
        return jobs.none()
    return jobs.filter(Q(created_by_id=user.pk) | Q(request__team_id__in=_team_ids(user)))


def visible_job(user: User | None, job_id: Any) -> GenerationJob | None:
    """Return one job if ``visible_jobs`` holds it, else None: one query for its creator.

    The job is read by primary key and the rule applied to the row: the creator needs no
    further query, the privileged one (roles, memoised per request), a team member one
    more. Cheaper than asking the rule inside the query: Django takes about a millisecond to
    build the role and team subqueries, more than the round trips they save.
    """
    if user is None or not user.is_authenticated:
        return None
    job = _jobs().filter(pk=job_id).first()
    if job is None or job.created_by_id == user.pk or sees_everything(user):
        return job
    if job.request_id is not None:
        teams = GenerationRequest.objects.filter(pk=job.request_id, team_id__in=_team_ids(user))
        if teams.exists():
            return job
    return None


def visible_outputs(user: User | None) -> QuerySet[Output]:
    """Outputs whose record the user may read (not necessarily download)."""
    outputs = Output.objects.select_related("model_version__model", "job")
    if sees_everything(user):
        return outputs
    if user is None or not user.is_authenticated:
        return outputs.none()
    return outputs.filter(
        Q(job__created_by_id=user.pk) | Q(job__request__team_id__in=_team_ids(user))
    )


def downloadable_outputs(user: User | None) -> QuerySet[Output]:
    """Outputs whose image the user may download: released (approved) ones for requesters."""
    outputs = visible_outputs(user).filter(purged_at__isnull=True)
    if sees_everything(user):
        return outputs
    return outputs.filter(review_status=ReviewStatus.APPROVED)


def with_flags(outputs: QuerySet[Output]) -> QuerySet[Output]:
    """Annotate ``flagged``: whether any machine check flagged the output."""
    return outputs.annotate(
        flagged=Exists(OutputCheck.objects.filter(output=OuterRef("pk"), flagged=True))
    )


def review_queue(user: User | None) -> QuerySet[Output]:
    """Pending outputs a reviewer may decide, oldest first, flagged ones marked.

    A reviewer's own requests are left out: they may not decide them.
    """
    if not user_has_role(user, Role.REVIEWER):
        return Output.objects.none()
    assert user is not None
    pending = Output.objects.select_related(
        "job__request__template_version__template", "model_version__model"
    ).filter(review_status=ReviewStatus.PENDING, purged_at__isnull=True)
    mine = Q(job__request__requested_by_id=user.pk) | Q(
        job__request__isnull=True, job__created_by_id=user.pk
    )
    return with_flags(pending.exclude(mine)).order_by("created_at")
