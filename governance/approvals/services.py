"""Teams, generation requests, review decisions and legal holds: every write of the workflow.

Separation of duties lives here, so the API, the web pages, the admin and the commands all
obey it: nobody decides an output of a request they made (``SelfApprovalForbidden``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from generation.models import Output, ReviewStatus
from generation.services import MAX_SEED, JobInputError, job_create
from governance.approvals.models import (
    DECISION_FROM,
    Decision,
    GenerationRequest,
    ReviewDecision,
    Team,
    TeamMembership,
)
from governance.audit.actions import AuditAction
from governance.audit.services import audit_append
from governance.captions.models import TemplateVersion
from governance.captions.schema import CaptionRenderError
from governance.captions.services import (
    TemplateLintFailed,
    TemplateNotPublished,
    template_version_render,
)
from governance.errors import GovernanceError, InvalidTransition, SelfApprovalForbidden
from governance.integrations.services import QuotaExceeded, quota_claim
from governance.registry.services import RegistryError, model_version_resolve
from governance.roles import Role, role_require

MAX_VARIATIONS = 16
TEAM_NAME_MAX = 64


class ApprovalInputError(GovernanceError):
    """Input to a workflow service is invalid; ``errors`` maps each field to why."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors


# --- teams ------------------------------------------------------------------------------


def team_create(*, name: str, title: str, created_by: AbstractBaseUser | None) -> Team:
    """Create a team; an administrator's act (``None`` is the operator at the shell)."""
    _require_administrator(created_by, "creating a team")
    from django.utils.text import slugify

    if not name or slugify(name) != name or len(name) > TEAM_NAME_MAX:
        raise ApprovalInputError({"name": "must be lower-case letters, digits, - or _"})
    if not title.strip():
        raise ApprovalInputError({"title": "must not be empty"})
    try:
        with transaction.atomic():
            team = Team.objects.create(name=name, title=title.strip())
            audit_append(
                actor=created_by,
                action=AuditAction.TEAM_CREATED,
                target_type="team",
                target_id=team.pk,
                payload={"name": name, "title": team.title},
            )
    except IntegrityError:
        raise ApprovalInputError({"name": f"a team named {name!r} exists"}) from None
    return team


def team_member_add(
    *, team: Team, user: AbstractBaseUser, added_by: AbstractBaseUser | None
) -> bool:
    """Add a user to a team; return False when they were a member already."""
    _require_administrator(added_by, "adding a team member")
    with transaction.atomic():
        _, created = TeamMembership.objects.get_or_create(
            team=team, user=user, defaults={"added_by": added_by}
        )
        if created:
            _audit_team(added_by, AuditAction.TEAM_MEMBER_ADDED, team, user)
    return created


def team_member_remove(
    *, team: Team, user: AbstractBaseUser, removed_by: AbstractBaseUser | None
) -> bool:
    """Take a user out of a team; return False when they were not a member."""
    _require_administrator(removed_by, "removing a team member")
    with transaction.atomic():
        deleted, _ = TeamMembership.objects.filter(team=team, user=user).delete()
        if deleted:
            _audit_team(removed_by, AuditAction.TEAM_MEMBER_REMOVED, team, user)
    return bool(deleted)


def _audit_team(
    actor: AbstractBaseUser | None, action: AuditAction, team: Team, user: AbstractBaseUser
) -> None:
    audit_append(
        actor=actor,
        action=action,
        target_type="team",
        target_id=team.pk,
        payload={"team": team.name, "username": user.get_username()},
    )


# --- requests ---------------------------------------------------------------------------


@contextmanager
def _quota_refusal_audited(
    actor: AbstractBaseUser, template_version: TemplateVersion
) -> Iterator[None]:
    """Record a quota refusal once the refused request's transaction has rolled back: who asked
    for how many images, with which template version, against which limit."""
    try:
        yield
    except QuotaExceeded as refused:
        with transaction.atomic():
            audit_append(
                actor=actor,
                action=AuditAction.QUOTA_EXCEEDED,
                target_type="team",
                target_id=refused.team.pk,
                payload={
                    "team": refused.team.name,
                    "template_version": str(template_version),
                    "requested": refused.requested,
                    "limit": refused.limit,
                    "used": refused.used,
                    "resets_at": refused.resets_at.isoformat(),
                },
            )
        raise


def request_create(
    *,
    requested_by: AbstractBaseUser,
    template_version: TemplateVersion,
    values: Mapping[str, Any],
    variations: int = 1,
    language: str = "en",
    team: Team | None = None,
    parent: GenerationRequest | None = None,
    seeds: Sequence[int] | None = None,
    priority: int = 5,
    changes_requested_by: AbstractBaseUser | None = None,
) -> GenerationRequest:
    """Render a published template version and queue one job per variation, each its own seed.

    The model is the template's model at the default alias, resolved now: every variation
    runs on that version whatever the alias does later. Raises ApprovalInputError naming
    each bad field (``values.<variable>`` for template variables).
    """
    # 1. who, for which team, how many, in which language
    role_require(requested_by, Role.REQUESTER, action="submitting a generation request")
    errors: dict[str, str] = {}
    team = _team_for(requested_by, team, errors)
    seeds = _seeds(variations, seeds, errors)
    if language not in dict(settings.LANGUAGES):
        errors["language"] = f"must be one of {', '.join(code for code, _ in settings.LANGUAGES)}"
    if parent is not None and team is not None:
        if parent.team_id != team.pk:
            errors["parent"] = f"{parent} belongs to team {parent.team}, not {team}"
        elif parent.template_version.template_id != template_version.template_id:
            errors["parent"] = f"{parent} used another template"
    # 2. the model: the template's model at the default alias, fixed now
    reference = f"{template_version.template.model.name}@{settings.GENERATION_DEFAULT_ALIAS}"
    try:
        model_version = model_version_resolve(reference)
    except RegistryError as exc:
        errors["model"] = str(exc)
    if errors:
        raise ApprovalInputError(errors)
    assert team is not None and seeds is not None
    with _quota_refusal_audited(requested_by, template_version), transaction.atomic():
        # 3. render under the version's row lock, so it cannot be retired half-way
        version = TemplateVersion.objects.select_for_update().get(pk=template_version.pk)
        rendered = _render(version, values, language)
        # the team's daily image quota, claimed under the team's row lock (QuotaExceeded)
        quota_claim(team=team, images=len(seeds))
        request = GenerationRequest.objects.create(
            team=team,
            requested_by=requested_by,
            template_version=version,
            values=_jsonable(values),
            values_used={name: dict(used) for name, used in rendered.values_used.items()},
            language=language,
            caption=rendered.caption,
            lint={
                "token_count": rendered.lint.token_count,
                "positions": dict(rendered.lint.positions),
                "warnings": [finding.to_dict() for finding in rendered.lint.warnings],
            },
            variations=len(seeds),
            model_version=model_version,
            model_reference=reference,
            parent=parent,
            changes_requested_by=changes_requested_by,
        )
        audit_append(
            actor=requested_by,
            action=AuditAction.REQUEST_CREATED,
            target_type="generation_request",
            target_id=request.pk,
            payload={
                "team": team.name,
                "template_version": str(version),
                "caption": request.caption,
                "values": request.values,
                "language": language,
                "variations": len(seeds),
                "seeds": list(seeds),
                "model_version": str(model_version),
                "model_reference": reference,
                "parent": str(parent.pk) if parent else None,
            },
        )
        # 4. one job per variation, dispatched when this transaction commits
        for variation, seed in enumerate(seeds):
            try:
                job_create(
                    created_by=requested_by,
                    caption=rendered.caption,
                    model_reference=str(model_version),
                    seed=seed,
                    priority=priority,
                    request=request,
                    variation=variation,
                )
            except JobInputError as exc:
                raise ApprovalInputError(exc.errors) from exc
    return request


def request_changes(
    *,
    request: GenerationRequest,
    by: AbstractBaseUser,
    comment: str,
    values: Mapping[str, Any] | None = None,
    new_seeds: bool = True,
) -> GenerationRequest:
    """A reviewer sends a request back: its pending outputs are marked, a child regenerates.

    The child belongs to the original requester (so that reviewers other than them may
    decide it), uses the same template version with ``values`` over the parent's, and new
    seeds unless ``new_seeds`` is False.
    """
    role_require(by, Role.REVIEWER, action="requesting changes")
    _forbid_own(by, request.requested_by_id, f"{request}")
    if not comment.strip():
        raise ApprovalInputError({"comment": "say what should change"})
    if not new_seeds and values is None:
        raise ApprovalInputError({"values": "give new values, new seeds, or both"})
    merged = {**request.values, **(values or {})}
    seeds = None if new_seeds else [job.seed for job in request.jobs.order_by("variation")]
    with transaction.atomic():
        child = request_create(
            requested_by=request.requested_by,
            template_version=request.template_version,
            values=merged,
            variations=request.variations,
            language=request.language,
            team=request.team,
            parent=request,
            seeds=seeds,
            changes_requested_by=by,
        )
        pending = Output.objects.select_for_update().filter(
            job__request=request, review_status=ReviewStatus.PENDING
        )
        marked = [
            _decide(
                output,
                by,
                Decision.CHANGES_REQUESTED,
                checklist={},
                comment=comment.strip(),
                flagged=_flagged(output),
                flagged_reason="",
                child=child,
            )
            for output in pending
        ]
        audit_append(
            actor=by,
            action=AuditAction.REQUEST_CHANGES_REQUESTED,
            target_type="generation_request",
            target_id=request.pk,
            payload={
                "child": str(child.pk),
                "comment": comment.strip(),
                "values": _jsonable(values or {}),
                "new_seeds": new_seeds,
                "outputs": [str(decision.output_id) for decision in marked],
            },
        )
    return child


def request_legal_hold_set(
    *, request: GenerationRequest, by: AbstractBaseUser | None, reason: str
) -> GenerationRequest:
    """Stop every purge of the request's outputs until the hold is released."""
    return _legal_hold(request, by, reason, hold=True)


def request_legal_hold_release(
    *, request: GenerationRequest, by: AbstractBaseUser | None, reason: str
) -> GenerationRequest:
    """Release a legal hold; retention applies again from the next purge."""
    return _legal_hold(request, by, reason, hold=False)


def _legal_hold(
    request: GenerationRequest, by: AbstractBaseUser | None, reason: str, *, hold: bool
) -> GenerationRequest:
    _require_administrator(by, "setting or releasing a legal hold")
    if not reason.strip():
        raise ApprovalInputError({"reason": "a legal hold needs a reason"})
    from django.utils import timezone

    with transaction.atomic():
        # The purge locks the same row, so a hold and a purge never interleave.
        locked = GenerationRequest.objects.select_for_update().get(pk=request.pk)
        if locked.legal_hold == hold:
            state = "on legal hold" if hold else "not on legal hold"
            raise InvalidTransition(f"{locked}", state, "held" if hold else "released")
        locked.legal_hold = hold
        locked.legal_hold_reason = reason.strip()
        locked.legal_hold_by = by  # type: ignore[assignment]
        locked.legal_hold_at = timezone.now()
        locked.save(
            update_fields=["legal_hold", "legal_hold_reason", "legal_hold_by", "legal_hold_at"]
        )
        audit_append(
            actor=by,
            action=(
                AuditAction.REQUEST_LEGAL_HOLD_SET
                if hold
                else AuditAction.REQUEST_LEGAL_HOLD_RELEASED
            ),
            target_type="generation_request",
            target_id=locked.pk,
            payload={"reason": locked.legal_hold_reason},
        )
    return locked


# --- review -----------------------------------------------------------------------------


def review_decide(
    *,
    output: Output,
    reviewer: AbstractBaseUser,
    decision: Decision | str,
    checklist: Iterable[str] = (),
    comment: str = "",
    flagged_reason: str = "",
) -> ReviewDecision:
    """Approve or reject one output; refused to the requester and to non-reviewers.

    Approval needs every checklist item of the template version ticked, and a reason when
    a machine check flagged the output; rejection needs a comment.
    """
    decision = _decision(decision)
    if decision == Decision.CHANGES_REQUESTED:
        raise ApprovalInputError({"decision": "use request_changes, which regenerates"})
    ticks = _ticks(checklist)
    with transaction.atomic():
        locked = _locked_output(output)
        _check_reviewer(locked, reviewer)
        ticked = _checklist(locked, ticks, decision, strict=True)
        flagged = _flagged(locked)
        _check_decision_input(locked, decision, comment, flagged, flagged_reason)
        return _decide(locked, reviewer, decision, ticked, comment.strip(), flagged, flagged_reason)


def review_bulk_approve(
    *,
    outputs: Iterable[Output],
    reviewer: AbstractBaseUser,
    checklist: Iterable[str],
    flagged_reason: str = "",
) -> list[ReviewDecision]:
    """Approve several outputs at once, all or none, writing one decision and event each.

    ``checklist`` holds the items ticked; each output needs every item of its own template
    version among them. ``flagged_reason`` applies to the flagged outputs of the batch.
    """
    ticks = _ticks(checklist)
    decisions = []
    with transaction.atomic():
        locked = [_locked_output(output) for output in outputs]
        if not locked:
            raise ApprovalInputError({"outputs": "select at least one output"})
        known: set[str] = set()
        for output in locked:
            known.update(_checklist_items(output))
        unknown = sorted(ticks - known)
        if unknown:
            raise ApprovalInputError({"checklist": f"not on any checklist: {', '.join(unknown)}"})
        for output in locked:
            _check_reviewer(output, reviewer)
            ticked = _checklist(output, ticks, Decision.APPROVED, strict=False)
            flagged = _flagged(output)
            _check_decision_input(output, Decision.APPROVED, "", flagged, flagged_reason)
            decisions.append(
                _decide(output, reviewer, Decision.APPROVED, ticked, "", flagged, flagged_reason)
            )
    return decisions


def requester_of(output: Output) -> int:
    """Return the id of the user who asked for the output (the request's or the job's maker)."""
    job = output.job
    if job.request_id is not None:
        return int(job.request.requested_by_id)
    return int(job.created_by_id)


def _check_reviewer(output: Output, reviewer: AbstractBaseUser) -> None:
    role_require(reviewer, Role.REVIEWER, action="reviewing an output")
    _forbid_own(reviewer, requester_of(output), f"output {output.pk}")


def _forbid_own(user: AbstractBaseUser, requester_id: int, what: str) -> None:
    if user.pk == requester_id:
        raise SelfApprovalForbidden(f"{user} requested {what} and cannot review it")


def _check_decision_input(
    output: Output, decision: str, comment: str, flagged: bool, flagged_reason: str
) -> None:
    if output.purged_at is not None:
        raise InvalidTransition(f"output {output.pk}", "purged", decision)
    if output.review_status not in DECISION_FROM[decision]:
        raise InvalidTransition(f"output {output.pk}", output.review_status, decision)
    if decision == Decision.REJECTED and not comment.strip():
        raise ApprovalInputError({"comment": "a rejection needs a comment"})
    if decision == Decision.APPROVED and flagged and not flagged_reason.strip():
        raise ApprovalInputError(
            {"flagged_reason": f"output {output.pk} was flagged by a machine check; say why "
             "it may be released anyway"}
        )  # fmt: skip


def _decide(
    output: Output,
    reviewer: AbstractBaseUser,
    decision: str,
    checklist: dict[str, bool],
    comment: str,
    flagged: bool,
    flagged_reason: str,
    child: GenerationRequest | None = None,
) -> ReviewDecision:
    row = ReviewDecision.objects.create(
        output=output,
        request_id=output.job.request_id,
        decision=decision,
        reviewer=reviewer,
        checklist=checklist,
        comment=comment,
        flagged=flagged,
        flagged_reason=flagged_reason.strip() if flagged else "",
        child_request=child,
    )
    Output.objects.filter(pk=output.pk).update(review_status=_STATUS[decision])
    output.review_status = _STATUS[decision]
    audit_append(
        actor=reviewer,
        action=_ACTION[decision],
        target_type="output",
        target_id=output.pk,
        payload={
            "decision_id": row.pk,
            "request": str(output.job.request_id) if output.job.request_id else None,
            "decision": decision,
            "checklist": checklist,
            "comment": comment,
            "flagged": flagged,
            "flagged_reason": row.flagged_reason,
            "child_request": str(child.pk) if child else None,
        },
    )
    return row


_STATUS = {
    Decision.APPROVED: ReviewStatus.APPROVED,
    Decision.REJECTED: ReviewStatus.REJECTED,
    Decision.CHANGES_REQUESTED: ReviewStatus.CHANGES_REQUESTED,
}
_ACTION = {
    Decision.APPROVED: AuditAction.REVIEW_APPROVED,
    Decision.REJECTED: AuditAction.REVIEW_REJECTED,
    Decision.CHANGES_REQUESTED: AuditAction.REVIEW_CHANGES_REQUESTED,
}


# --- helpers ----------------------------------------------------------------------------


def _require_administrator(actor: AbstractBaseUser | None, action: str) -> None:
    # None is the operator at the command line, trusted like a migration.
    if actor is not None:
        role_require(actor, Role.ADMINISTRATOR, action=action)


def _team_for(user: AbstractBaseUser, team: Team | None, errors: dict[str, str]) -> Team | None:
    teams = Team.objects.filter(memberships__user=user)
    if team is not None:
        if not teams.filter(pk=team.pk).exists():
            errors["team"] = f"{user} is not a member of team {team}"
        return team
    found = list(teams[:2])
    if len(found) != 1:
        errors["team"] = (
            f"{user} belongs to no team" if not found else "name the team: you belong to several"
        )
        return None
    return found[0]


def _seeds(
    variations: int, seeds: Sequence[int] | None, errors: dict[str, str]
) -> list[int] | None:
    if isinstance(variations, bool) or not isinstance(variations, int):
        errors["variations"] = "must be a whole number"
        return None
    if not 1 <= variations <= MAX_VARIATIONS:
        errors["variations"] = f"must be between 1 and {MAX_VARIATIONS}"
        return None
    if seeds is None:
        return [secrets.randbelow(MAX_SEED) for _ in range(variations)]
    seeds = list(seeds)
    if len(seeds) != variations:
        errors["seeds"] = f"give one seed per variation ({variations}), not {len(seeds)}"
    elif any(
        isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED for s in seeds
    ):
        errors["seeds"] = f"every seed must be a whole number from 0 to {MAX_SEED}"
    elif len(set(seeds)) != len(seeds):
        errors["seeds"] = "each variation needs its own seed"
    return seeds


def _render(version: TemplateVersion, values: Mapping[str, Any], language: str) -> Any:
    try:
        return template_version_render(version=version, values=values, language=language)
    except TemplateNotPublished as exc:
        raise ApprovalInputError({"template_version": str(exc)}) from exc
    except CaptionRenderError as exc:
        raise ApprovalInputError(
            {f"values.{name}": why for name, why in exc.errors.items()}
        ) from exc
    except TemplateLintFailed as exc:
        raise ApprovalInputError({"caption": f"the caption fails the lint: {exc}"}) from exc


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(k): v if isinstance(v, str | int | float | bool) or v is None else str(v)
        for k, v in values.items()
    }


def _decision(value: Decision | str) -> Decision:
    try:
        return Decision(value)
    except ValueError:
        names = ", ".join(Decision.values)
        raise ApprovalInputError({"decision": f"must be one of {names}"}) from None


def _ticks(checklist: Iterable[str]) -> set[str]:
    if isinstance(checklist, str) or not all(isinstance(item, str) for item in checklist):
        raise ApprovalInputError({"checklist": "must be a list of the ticked items' texts"})
    return set(checklist)


def _locked_output(output: Output) -> Output:
    return (
        Output.objects.select_for_update(of=("self",))
        .select_related("job__request__template_version")
        .get(pk=output.pk)
    )


def _checklist_items(output: Output) -> list[str]:
    request = output.job.request if output.job.request_id else None
    return list(request.template_version.checklist) if request else []


def _checklist(output: Output, ticks: set[str], decision: str, *, strict: bool) -> dict[str, bool]:
    items = _checklist_items(output)
    unknown = sorted(ticks - set(items))
    if strict and unknown:
        raise ApprovalInputError({"checklist": f"not on this checklist: {', '.join(unknown)}"})
    missing = [item for item in items if item not in ticks]
    if decision == Decision.APPROVED and missing:
        raise ApprovalInputError(
            {"checklist": f"output {output.pk}: not ticked: {'; '.join(missing)}"}
        )
    return {item: item in ticks for item in items}


def _flagged(output: Output) -> bool:
    return output.checks.filter(flagged=True).exists()
