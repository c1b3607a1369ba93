"""Reads the pages and the API share: what a person may see, shaped for display."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from generation.models import GenerationJob, Output
from governance.approvals import selectors
from governance.approvals.models import GenerationRequest, Team
from governance.captions.models import TemplateStatus, TemplateVersion
from governance.integrations.services import QuotaStatus, quota_status
from governance.registry.models import (
    AliasMoveRequest,
    AliasMoveRequestStatus,
    ModelVersion,
    RegisteredModel,
)
from governance.roles import Role, user_has_role

User = AbstractBaseUser | AnonymousUser


def published_versions() -> QuerySet[TemplateVersion]:
    """The newest published version of every template, by template name."""
    newer = TemplateVersion.objects.filter(
        template=OuterRef("template"),
        status=TemplateStatus.PUBLISHED,
        number__gt=OuterRef("number"),
    )
    return (
        TemplateVersion.objects.select_related("template__model")
        .filter(status=TemplateStatus.PUBLISHED)
        .exclude(Exists(newer))
        .order_by("template__name")
    )


def published_version(version_id: int) -> TemplateVersion | None:
    """A published version by id (any published version, not only the newest)."""
    return (
        TemplateVersion.objects.select_related("template__model")
        .filter(pk=version_id, status=TemplateStatus.PUBLISHED)
        .first()
    )


def request_list(
    user: User,
    *,
    team: str | None = None,
    template: str | None = None,
    mine: bool = False,
    review_status: str | None = None,
) -> QuerySet[GenerationRequest]:
    """Requests the user may see, newest first, with the given filters."""
    found = selectors.visible_requests(user)
    if team:
        found = found.filter(team__name=team)
    if template:
        found = found.filter(template_version__template__name=template)
    if mine:
        found = found.filter(requested_by_id=user.pk)
    if review_status:
        found = found.filter(jobs__output__review_status=review_status).distinct()
    return found.prefetch_related(
        Prefetch("jobs", queryset=GenerationJob.objects.select_related("output"))
    ).order_by("-created_at")


def request_detail(user: User, request_id: Any) -> GenerationRequest | None:
    """One visible request with its jobs and outputs, or None."""
    jobs = GenerationJob.objects.select_related("output").order_by("variation")
    return (
        selectors.visible_requests(user)
        .prefetch_related(Prefetch("jobs", queryset=jobs))
        .filter(pk=request_id)
        .first()
    )


def downloadable_ids(user: User, outputs: list[Output]) -> set[Any]:
    """Which of these outputs the user may download."""
    ids = [output.pk for output in outputs]
    return set(selectors.downloadable_outputs(user).filter(pk__in=ids).values_list("pk", flat=True))


def review_item(user: User, output_id: Any) -> Output | None:
    """An output for the review page: any visible output (the service decides who may act)."""
    if not user_has_role(user, Role.REVIEWER):
        return None
    return (
        selectors.with_flags(selectors.visible_outputs(user))
        .select_related("job__request__template_version__template", "job__request__team")
        .prefetch_related("checks", "review_decisions__reviewer")
        .filter(pk=output_id)
        .first()
    )


def siblings(output: Output) -> list[Output]:
    """The other variations of the output's request, in variation order."""
    if output.job.request_id is None:
        return [output]
    return list(
        Output.objects.filter(job__request_id=output.job.request_id)
        .select_related("job")
        .order_by("job__variation")
    )


def user_teams(user: User) -> QuerySet[Team]:
    """The teams the user belongs to."""
    return Team.objects.filter(memberships__user_id=user.pk).order_by("name")


def team_quotas(teams: QuerySet[Team] | list[Team]) -> list[QuotaStatus]:
    """Today's quota of each team."""
    return [quota_status(team=team) for team in teams]


def user_roles(user: User) -> list[str]:
    """The governance roles the user holds."""
    return [role.value for role in Role if user_has_role(user, role)]


def registered_models() -> QuerySet[RegisteredModel]:
    """Every model with its versions, weights and aliases."""
    versions = ModelVersion.objects.select_related("registered_by").prefetch_related("weights")
    return RegisteredModel.objects.prefetch_related(
        Prefetch("versions", queryset=versions.order_by("-version")),
        "aliases__version",
    ).order_by("name")


def alias_move_requests(
    *, status: str | None = None, model: str | None = None
) -> QuerySet[AliasMoveRequest]:
    """Alias move requests, newest first."""
    found = AliasMoveRequest.objects.select_related(
        "model", "from_version", "to_version", "requested_by", "decided_by"
    )
    if status:
        found = found.filter(status=status)
    if model:
        found = found.filter(model__name=model)
    return found


PENDING_MOVE = AliasMoveRequestStatus.PENDING
