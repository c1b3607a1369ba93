"""Caption template writes and reads: versions, their lint, publication, rendering."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from governance.audit.actions import AuditAction
from governance.audit.services import audit_append
from governance.captions.lint import (
    CONTEXT_LENGTH,
    KEY_POSITION_LIMIT,
    LONG_CAPTION_FACTOR,
    CaptionLint,
    Finding,
    LintPolicy,
    lint_caption,
    normalise,
    token_count,
)
from governance.captions.models import (
    TRANSITIONS,
    LintTerm,
    LintTermKind,
    Template,
    TemplateStatus,
    TemplateVersion,
)
from governance.captions.schema import (
    CaptionRenderError,
    TemplateSchema,
    TemplateSchemaError,
    Variable,
    format_number,
    render,
    schema_parse,
)
from governance.errors import GovernanceError, InvalidTransition, SelfApprovalForbidden
from governance.registry.models import ModelAlias, ModelVersion, RegisteredModel
from governance.roles import Role, role_require

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_EXAMPLES = 50


class TemplateError(GovernanceError):
    """A template operation was refused; the message says why."""


class TemplateNotPublished(TemplateError):
    """Requests may only use published template versions."""


class TemplateLintFailed(TemplateError):
    """The lint found errors; ``lint`` holds the findings (a CaptionLint or a version report)."""

    def __init__(self, message: str, lint: CaptionLint | dict[str, Any]) -> None:
        super().__init__(message)
        self.lint = lint


@dataclasses.dataclass(frozen=True)
class RenderedCaption:
    """A caption ready for a job: the text, its lint, and each variable's value and source."""

    caption: str
    lint: CaptionLint
    values_used: Mapping[str, dict[str, Any]]
    template_version_id: int


# --- templates and versions ---------------------------------------------------------------


def template_create(
    *,
    name: str,
    title: str,
    model_name: str,
    created_by: AbstractBaseUser,
    owner: AbstractBaseUser | None = None,
    description: str = "",
) -> Template:
    """Create an empty template for a registered model; versions hold the content."""
    if not NAME.fullmatch(name):
        raise TemplateSchemaError({"name": "must be lower-case letters, digits, - or _"})
    if not title.strip():
        raise TemplateSchemaError({"title": "must not be empty"})
    model = RegisteredModel.objects.filter(name=model_name).first()
    if model is None:
        raise TemplateSchemaError({"model": f"no registered model {model_name!r}"})
    try:
        with transaction.atomic():
            template = Template.objects.create(
                name=name,
                title=title.strip(),
                description=description,
                model=model,
                owner=owner or created_by,
                created_by=created_by,
            )
            audit_append(
                actor=created_by,
                action=AuditAction.TEMPLATE_CREATED,
                target_type="caption_template",
                target_id=template.pk,
                payload={"name": name, "model": model_name, "owner": template.owner.get_username()},
            )
    except IntegrityError:
        raise TemplateSchemaError({"name": f"a template named {name!r} exists"}) from None
    return template


def template_version_create(
    *,
    template: Template,
    created_by: AbstractBaseUser,
    based_on: TemplateVersion | None = None,
    pattern: str | None = None,
    variables: list[dict[str, Any]] | None = None,
    checklist: list[str] | None = None,
    examples: list[dict[str, Any]] | None = None,
) -> TemplateVersion:
    """Create the next numbered draft; fields not given are copied from ``based_on``.

    This is the only way to "edit" a template: no version ever changes after creation.
    """
    if based_on is not None and based_on.template_id != template.pk:
        raise TemplateSchemaError({"based_on": f"{based_on} is not a version of {template}"})
    pattern = pattern if pattern is not None else (based_on.pattern if based_on else None)
    variables = variables if variables is not None else (based_on.variables if based_on else None)
    checklist = checklist if checklist is not None else (based_on.checklist if based_on else [])
    examples = examples if examples is not None else (based_on.examples if based_on else [])
    schema = schema_parse(pattern, variables)
    _check_checklist(checklist)
    _check_examples(schema, examples)
    with transaction.atomic():
        locked = Template.objects.select_for_update().get(pk=template.pk)
        last = locked.versions.order_by("-number").values_list("number", flat=True).first()
        version = TemplateVersion(
            template=locked,
            number=(last or 0) + 1,
            based_on=based_on,
            pattern=pattern,
            variables=variables,
            checklist=checklist,
            examples=examples,
            created_by=created_by,
        )
        version.lint_report = version_lint_report(version)
        version.save()
        _audit(
            created_by,
            AuditAction.TEMPLATE_VERSION_CREATED,
            version,
            based_on=based_on.number if based_on else None,
            lint_errors=version.lint_report["errors"],
            lint_warnings=version.lint_report["warnings"],
        )
    return version


def template_version_submit(*, version: TemplateVersion, by: AbstractBaseUser) -> TemplateVersion:
    """Lint the draft afresh over its examples and extremes and submit it for publication.

    Refused (TemplateLintFailed) while the lint has errors; the fresh report is kept either way.
    """
    with transaction.atomic():
        version = _lock(version)
        _check_transition(version, TemplateStatus.SUBMITTED)
        version.lint_report = version_lint_report(version)
        if version.lint_report["errors"]:
            version.save(update_fields=["lint_report"])
            failed = version.lint_report
        else:
            failed = None
            version.status = TemplateStatus.SUBMITTED
            version.submitted_by = by
            version.submitted_at = timezone.now()
            version.save(update_fields=["lint_report", "status", "submitted_by", "submitted_at"])
            _audit(
                by,
                AuditAction.TEMPLATE_VERSION_SUBMITTED,
                version,
                lint_warnings=version.lint_report["warnings"],
            )
    if failed is not None:
        raise TemplateLintFailed(
            f"{version} has {failed['errors']} lint error(s); fix them in a new version", failed
        )
    return version


def template_version_publish(
    *, version: TemplateVersion, approved_by: AbstractBaseUser
) -> TemplateVersion:
    """Publish a submitted version; the approver is a reviewer who did not write or submit it."""
    with transaction.atomic():
        version = _lock(version)
        _check_transition(version, TemplateStatus.PUBLISHED)
        role_require(approved_by, Role.REVIEWER, action="publishing a caption template")
        if approved_by.pk in (version.created_by_id, version.submitted_by_id):
            raise SelfApprovalForbidden(
                f"{approved_by} wrote or submitted {version} and cannot approve it"
            )
        version.status = TemplateStatus.PUBLISHED
        version.published_by = approved_by
        version.published_at = timezone.now()
        version.save(update_fields=["status", "published_by", "published_at"])
        _audit(
            approved_by,
            AuditAction.TEMPLATE_VERSION_PUBLISHED,
            version,
            author=version.created_by.get_username(),
        )
    return version


def template_version_reject(
    *, version: TemplateVersion, rejected_by: AbstractBaseUser, reason: str
) -> TemplateVersion:
    """Send a submitted version back with a reason; a fix is a new version."""
    if not reason.strip():
        raise TemplateSchemaError({"reason": "a rejection needs a reason"})
    with transaction.atomic():
        version = _lock(version)
        _check_transition(version, TemplateStatus.REJECTED)
        role_require(rejected_by, Role.REVIEWER, action="rejecting a caption template")
        version.status = TemplateStatus.REJECTED
        version.rejected_by = rejected_by
        version.rejected_at = timezone.now()
        version.rejection_reason = reason.strip()
        version.save(update_fields=["status", "rejected_by", "rejected_at", "rejection_reason"])
        _audit(rejected_by, AuditAction.TEMPLATE_VERSION_REJECTED, version, reason=reason.strip())
    return version


def template_version_retire(
    *, version: TemplateVersion, retired_by: AbstractBaseUser
) -> TemplateVersion:
    """Withdraw a published version from use; existing jobs keep their record."""
    with transaction.atomic():
        version = _lock(version)
        _check_transition(version, TemplateStatus.RETIRED)
        role_require(retired_by, Role.REVIEWER, action="retiring a caption template")
        version.status = TemplateStatus.RETIRED
        version.retired_by = retired_by
        version.retired_at = timezone.now()
        version.save(update_fields=["status", "retired_by", "retired_at"])
        _audit(retired_by, AuditAction.TEMPLATE_VERSION_RETIRED, version)
    return version


def template_version_resolve(reference: str) -> TemplateVersion:
    """Resolve ``name:number``, or a bare ``name`` to its newest published version."""
    name, _, number = reference.strip().partition(":")
    versions = TemplateVersion.objects.select_related("template__model").filter(template__name=name)
    if number:
        found = versions.filter(number=int(number)).first() if number.isdigit() else None
    else:
        found = versions.filter(status=TemplateStatus.PUBLISHED).order_by("-number").first()
    if found is None:
        what = f"no version {number}" if number else "no published version"
        raise TemplateError(f"template {name!r} has {what}")
    return found


def template_version_render(
    *,
    version: TemplateVersion,
    values: Mapping[str, Any],
    language: str = "en",
    preview: bool = False,
) -> RenderedCaption:
    """Render a published version strictly and lint the caption; errors refuse the caption.

    ``preview`` renders any version and returns the caption even when the lint has errors.
    """
    if not preview:
        # The stored status, not the caller's copy: a version may have been retired since.
        status = TemplateVersion.objects.filter(pk=version.pk).values_list("status", flat=True)
        current = status.first()
        if current != TemplateStatus.PUBLISHED:
            raise TemplateNotPublished(f"{version} is {current}; only published versions run")
    schema = _schema(version)
    rendered = render(schema, values, language)
    lint = lint_caption(
        rendered.caption,
        lint_policy(template=version.template),
        spans=rendered.spans,
        key_variables=_keys(schema),
    )
    if not preview and lint.errors:
        raise TemplateLintFailed("; ".join(finding.message for finding in lint.errors), lint)
    return RenderedCaption(
        caption=rendered.caption,
        lint=lint,
        values_used=rendered.values_used,
        template_version_id=version.pk,
    )


def caption_lint(
    *, version: TemplateVersion, values: Mapping[str, Any], language: str = "en"
) -> CaptionLint:
    """Lint the caption the values would make, for live feedback while a form is filled in.

    Missing, unknown or ill-typed variables come back as ``variables`` errors, not exceptions.
    """
    try:
        return template_version_render(
            version=version, values=values, language=language, preview=True
        ).lint
    except CaptionRenderError as exc:
        findings = tuple(
            Finding(rule="variables", severity="error", variable=name, message=f"{name} {why}")
            for name, why in exc.errors.items()
        )
        return CaptionLint(caption="", token_count=0, positions={}, findings=findings)


# --- the organisation's term lists --------------------------------------------------------


def lint_term_create(
    *,
    kind: str,
    term: str,
    reason: str,
    created_by: AbstractBaseUser | None,
    template: Template | None = None,
) -> LintTerm:
    """Add a banned term (organisation-wide) or a required term (everywhere or one template)."""
    if created_by is not None:
        role_require(created_by, Role.ADMINISTRATOR, action="changing the lint term lists")
    if kind not in LintTermKind.values:
        raise TemplateSchemaError({"kind": f"must be one of {', '.join(LintTermKind.values)}"})
    if not isinstance(term, str) or not normalise(term) or len(term) > 200:
        raise TemplateSchemaError({"term": "must be 1 to 200 characters of visible text"})
    if kind == LintTermKind.BANNED and template is not None:
        raise TemplateSchemaError({"template": "banned terms apply to every template"})
    if not reason.strip():
        raise TemplateSchemaError({"reason": "say why the term is listed"})
    with transaction.atomic():
        same_scope = LintTerm.objects.select_for_update().filter(
            kind=kind, template=template, active=True
        )
        for existing in same_scope:
            if normalise(existing.term) == normalise(term):
                raise TemplateSchemaError({"term": f"{existing.term!r} is already listed"})
        lint_term = LintTerm.objects.create(
            kind=kind, term=term, reason=reason.strip(), template=template, created_by=created_by
        )
        audit_append(
            actor=created_by,
            action=AuditAction.LINT_TERM_ADDED,
            target_type="lint_term",
            target_id=lint_term.pk,
            payload={
                "kind": kind,
                "term": term,
                "template": template.name if template else None,
                "reason": lint_term.reason,
            },
        )
    return lint_term


def lint_term_deactivate(
    *, lint_term: LintTerm, deactivated_by: AbstractBaseUser | None
) -> LintTerm:
    """Stop applying a term; the row stays so earlier lint reports remain explicable."""
    if deactivated_by is not None:
        role_require(deactivated_by, Role.ADMINISTRATOR, action="changing the lint term lists")
    with transaction.atomic():
        lint_term = LintTerm.objects.select_for_update().get(pk=lint_term.pk)
        if not lint_term.active:
            raise TemplateError(f"{lint_term} is already inactive")
        lint_term.active = False
        lint_term.deactivated_by = deactivated_by
        lint_term.deactivated_at = timezone.now()
        lint_term.save(update_fields=["active", "deactivated_by", "deactivated_at"])
        audit_append(
            actor=deactivated_by,
            action=AuditAction.LINT_TERM_DEACTIVATED,
            target_type="lint_term",
            target_id=lint_term.pk,
            payload={"kind": lint_term.kind, "term": lint_term.term},
        )
    return lint_term


def lint_policy(*, template: Template) -> LintPolicy:
    """The terms and model card a caption of this template is checked against, as of now."""
    banned, required = [], []
    terms = LintTerm.objects.filter(active=True).filter(
        Q(template__isnull=True) | Q(template=template)
    )
    for kind, term in terms.values_list("kind", "term"):
        (banned if kind == LintTermKind.BANNED else required).append(term)
    card_version = _card_version(template.model_id)
    typical = card_version.model_card.get("typical_caption_tokens") if card_version else None
    return LintPolicy(
        banned_terms=tuple(banned),
        required_terms=tuple(required),
        typical_caption_tokens=typical,
        model_version=str(card_version) if card_version else None,
    )


def _card_version(model_id: int) -> ModelVersion | None:
    # The production version is what requests will run on; before there is one, the newest.
    alias = (
        ModelAlias.objects.select_related("version__model")
        .filter(model_id=model_id, name=settings.GENERATION_DEFAULT_ALIAS)
        .first()
    )
    if alias is not None:
        return alias.version
    return (
        ModelVersion.objects.select_related("model")
        .filter(model_id=model_id)
        .order_by("-version")
        .first()
    )


# --- the version lint: every example and every variable at its extreme --------------------


def version_lint_report(version: TemplateVersion) -> dict[str, Any]:
    """Lint every example and every variable at its longest; returns the JSON report."""
    schema = _schema(version)
    policy = lint_policy(template=version.template)
    template_findings = _template_findings(schema, version)
    if policy.typical_caption_tokens is None:
        template_findings.append(
            Finding(
                "caption_length",
                "info",
                f"the model card of {policy.model_version or 'the model'} states no typical "
                "caption length, so caption length is not compared",
            )
        )
    cases: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(label: str, values: dict[str, Any]) -> None:
        try:
            rendered = render(schema, values)
        except CaptionRenderError as exc:
            cases.append(
                {
                    "label": label,
                    "values": _jsonable(values),
                    "findings": [
                        Finding("variables", "error", f"{name} {why}", variable=name).to_dict()
                        for name, why in exc.errors.items()
                    ],
                }
            )
            return
        if rendered.caption in seen:
            return
        seen.add(rendered.caption)
        lint = lint_caption(
            rendered.caption, policy, spans=rendered.spans, key_variables=_keys(schema)
        )
        cases.append({"label": label, "values": _jsonable(values), **lint.to_dict()})

    for index, example in enumerate(version.examples, start=1):
        add(f"example {index}", dict(example))
    base = _base_values(schema, version.examples)
    longest = {name: _longest_value(variable) for name, variable in schema.variables.items()}
    for name in schema.variables:
        add(f"longest {name}", {**base, name: longest[name]})
    if len(schema.variables) > 1:
        add("every variable at its longest", dict(longest))
    findings = [*template_findings, *(f for case in cases for f in case["findings"])]
    return {
        "tokenizer": f"CLIP BPE, {CONTEXT_LENGTH}-token context",
        "rules": {
            "context_length": CONTEXT_LENGTH,
            "key_position_limit": KEY_POSITION_LIMIT,
            "long_caption_factor": LONG_CAPTION_FACTOR,
        },
        "policy": {
            "banned_terms": len(policy.banned_terms),
            "required_terms": list(policy.required_terms),
            "typical_caption_tokens": policy.typical_caption_tokens,
            "model_version": policy.model_version,
        },
        "checked_at": timezone.now().isoformat(),
        "template_findings": [f.to_dict() for f in template_findings],
        "cases": cases,
        "errors": sum(1 for f in findings if _severity(f) == "error"),
        "warnings": sum(1 for f in findings if _severity(f) == "warning"),
    }


def _severity(finding: Finding | dict[str, Any]) -> str:
    return finding.severity if isinstance(finding, Finding) else str(finding["severity"])


def _template_findings(schema: TemplateSchema, version: TemplateVersion) -> list[Finding]:
    findings: list[Finding] = []
    if not version.examples:
        findings.append(
            Finding("examples", "error", "add at least one example variable set to lint")
        )
    if not version.checklist:
        findings.append(Finding("checklist", "warning", "the review checklist is empty"))
    if not _keys(schema):
        findings.append(
            Finding("key_position", "info", "no key variables: the 20-token rule checks nothing")
        )
    languages = [code for code, _ in settings.LANGUAGES]
    for name, variable in schema.variables.items():
        if variable.type != "choice":
            continue
        missing = sorted(
            {lang for choice in variable.choices for lang in languages if lang not in choice.labels}
            - {"en"}
        )
        if missing:
            findings.append(
                Finding(
                    "labels",
                    "warning",
                    f"choices of {name} lack {', '.join(missing)} labels; staff will see the "
                    "English value",
                    variable=name,
                )
            )
    return findings


def _base_values(schema: TemplateSchema, examples: list[dict[str, Any]]) -> dict[str, Any]:
    """The first example, completed with defaults and first choices where it says nothing."""
    first = dict(examples[0]) if examples else {}
    base: dict[str, Any] = {}
    for name, variable in schema.variables.items():
        if first.get(name) is not None:
            base[name] = first[name]
        elif variable.default is not None:
            base[name] = variable.default
        elif variable.type == "choice":
            base[name] = variable.choices[0].value
        elif variable.type == "number":
            base[name] = format_number(variable.minimum)
        else:
            base[name] = "x"
    return base


# Characters to build a text variable's worst case from; single letters, digits and symbols
# alternating with separators each become a token of their own, rare scripts several.
_REPRESENTATIVES = {
    "words": ("a", "q", "-", "'", " "),
    "text": ("a", "q", "1", "-", ".", " "),
    "unicode": ("a", "1", "-", " ", "é", "漢", "𓀀"),
}


def _longest_value(variable: Variable) -> str:
    """The allowed value that costs the most tokens (text: at its full max_length)."""
    if variable.type == "choice":
        return max((c.value for c in variable.choices), key=token_count)
    if variable.type == "number":
        step = Decimal(1).scaleb(-variable.decimals)
        candidates = {variable.minimum, variable.maximum}
        if variable.decimals:
            candidates |= {variable.minimum + step, variable.maximum - step}
        inside = [c for c in candidates if variable.minimum <= c <= variable.maximum]
        return max(
            (format_number(c.quantize(step) if variable.decimals else c) for c in inside),
            key=token_count,
        )
    reps = _REPRESENTATIVES[variable.charset]
    best, best_count = "", -1
    for first in reps:
        for second in (*reps, ""):
            unit = first + second
            if not unit.strip():
                continue
            try:
                value = variable.parse((unit * variable.max_length)[: variable.max_length])
            except ValueError:
                continue
            count = token_count(value)
            if count > best_count:
                best, best_count = value, count
    return best


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(k): v if isinstance(v, str | int | float | bool) or v is None else str(v)
        for k, v in values.items()
    }


# --- helpers ------------------------------------------------------------------------------


def _schema(version: TemplateVersion) -> TemplateSchema:
    return schema_parse(version.pattern, version.variables)


def _keys(schema: TemplateSchema) -> list[str]:
    return [name for name, variable in schema.variables.items() if variable.key]


def _audit(
    actor: AbstractBaseUser | None, action: AuditAction, version: TemplateVersion, **payload: Any
) -> None:
    audit_append(
        actor=actor,
        action=action,
        target_type="caption_template_version",
        target_id=version.pk,
        payload={"template": version.template.name, "number": version.number, **payload},
    )


def _lock(version: TemplateVersion) -> TemplateVersion:
    return (
        TemplateVersion.objects.select_for_update()
        .select_related("template__model")
        .get(pk=version.pk)
    )


def _check_transition(version: TemplateVersion, target: str) -> None:
    if target not in TRANSITIONS[version.status]:
        raise InvalidTransition(str(version), version.status, target)


def _check_checklist(checklist: Any) -> None:
    if not isinstance(checklist, list) or not all(
        isinstance(item, str) and item.strip() for item in checklist
    ):
        raise TemplateSchemaError({"checklist": "must be a list of non-empty review points"})


def _check_examples(schema: TemplateSchema, examples: Any) -> None:
    if not isinstance(examples, list) or len(examples) > MAX_EXAMPLES:
        raise TemplateSchemaError(
            {"examples": f"must be a list of at most {MAX_EXAMPLES} variable sets"}
        )
    errors: dict[str, str] = {}
    for index, example in enumerate(examples):
        try:
            render(schema, example)
        except CaptionRenderError as exc:
            for name, why in exc.errors.items():
                errors[f"examples[{index}].{name}"] = why
    if errors:
        raise TemplateSchemaError(errors)
