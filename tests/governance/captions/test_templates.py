"""Caption template versions: immutable, linted, published through separation of duties."""

import time

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from governance.captions.models import (
    ImmutableVersionError,
    LintTermKind,
    TemplateStatus,
    TemplateVersion,
)
from governance.captions.schema import CaptionRenderError, TemplateSchemaError
from governance.captions.services import (
    TemplateLintFailed,
    TemplateNotPublished,
    caption_lint,
    lint_term_create,
    lint_term_deactivate,
    template_version_create,
    template_version_publish,
    template_version_reject,
    template_version_render,
    template_version_retire,
    template_version_submit,
)
from governance.errors import InvalidTransition, RoleRequired, SelfApprovalForbidden
from governance.registry.services import model_version_register, sources_from_directory

from .conftest import SHAPES

pytestmark = pytest.mark.django_db

VALUES = {"size": "small", "colour": "blue", "shape": "star"}


def published(version, author, reviewer):
    template_version_submit(version=version, by=author)
    return template_version_publish(version=version, approved_by=reviewer)


# --- creating and editing -------------------------------------------------------------


def test_a_new_version_is_a_numbered_draft_with_its_lint_report_and_an_audit_event(
    draft, author, audit_trail
):
    assert (draft.number, draft.status) == (1, TemplateStatus.DRAFT)
    assert draft.lint_report["errors"] == 0
    labels = [case["label"] for case in draft.lint_report["cases"]]
    assert labels[0] == "example 1"
    assert "longest shape" in labels
    assert audit_trail("template.version_created", draft.pk) == [
        (
            "ada",
            {
                "template": "shapes",
                "number": 1,
                "based_on": None,
                "lint_errors": 0,
                "lint_warnings": draft.lint_report["warnings"],
            },
        )
    ]


def test_editing_makes_a_new_version_and_leaves_the_published_one_unchanged(
    draft, author, reviewer
):
    published(draft, author, reviewer)
    edited = template_version_create(
        template=draft.template,
        created_by=author,
        based_on=draft,
        pattern="a {size} {colour} {shape} on a {background} background",
    )
    draft.refresh_from_db()
    assert (edited.number, edited.based_on_id, edited.status) == (2, draft.pk, "draft")
    assert edited.variables == draft.variables and edited.examples == draft.examples
    assert draft.pattern == SHAPES["pattern"] and draft.status == TemplateStatus.PUBLISHED


def test_a_saved_change_to_a_published_version_is_refused_by_the_model(draft, author, reviewer):
    version = published(draft, author, reviewer)
    version.pattern = "a {size} {colour} {shape} {background}"
    with pytest.raises(ImmutableVersionError, match="pattern"):
        version.save()
    with pytest.raises(ImmutableVersionError):
        version.delete()


def test_the_database_refuses_changes_that_bypass_the_model(draft, author, reviewer):
    version = published(draft, author, reviewer)
    rows = TemplateVersion.objects.filter(pk=version.pk)
    for change in ({"pattern": "a {size}"}, {"status": "draft"}, {"lint_report": {}}):
        with pytest.raises(DatabaseError), transaction.atomic():
            rows.update(**change)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM captions_templateversion WHERE id = %s", [version.pk])
    assert rows.get().pattern == SHAPES["pattern"]


def test_a_malformed_version_is_refused_naming_the_field_and_nothing_is_saved(template, author):
    with pytest.raises(TemplateSchemaError) as caught:
        template_version_create(
            template=template,
            created_by=author,
            **{**SHAPES, "examples": [{"size": "huge", "colour": "red", "shape": "star"}]},
        )
    assert caught.value.errors == {"examples[0].size": "'huge' is not one of: small, large"}
    assert not TemplateVersion.objects.exists()


# --- submission and publication -------------------------------------------------------


def test_submission_relints_and_is_refused_while_the_lint_has_errors(template, author):
    # A 70-character free-text field pushes the caption past 77 tokens at its longest.
    variables = [*SHAPES["variables"][:2], {**SHAPES["variables"][2], "max_length": 70}]
    version = template_version_create(
        template=template,
        created_by=author,
        pattern="a {size} {colour} {shape}, black background",
        variables=variables,
        examples=[{"size": "large", "colour": "red", "shape": "circle"}],
        checklist=["colour matches"],
    )
    with pytest.raises(TemplateLintFailed, match="lint error"):
        template_version_submit(version=version, by=author)
    version.refresh_from_db()
    assert version.status == TemplateStatus.DRAFT
    longest = next(c for c in version.lint_report["cases"] if c["label"] == "longest shape")
    assert longest["token_count"] > 77
    assert [f["rule"] for f in longest["findings"]] == ["token_limit"]


def test_a_version_without_examples_cannot_be_submitted(template, author):
    version = template_version_create(
        template=template, created_by=author, **{**SHAPES, "examples": []}
    )
    with pytest.raises(TemplateLintFailed):
        template_version_submit(version=version, by=author)
    assert version.lint_report["template_findings"][0]["rule"] == "examples"


def test_a_reviewer_publishes_a_submitted_version_and_both_steps_are_audited(
    draft, author, reviewer, audit_trail
):
    version = published(draft, author, reviewer)
    assert (version.status, version.published_by, version.submitted_by) == (
        TemplateStatus.PUBLISHED,
        reviewer,
        author,
    )
    assert version.published_at is not None
    assert [actor for actor, _ in audit_trail("template.version_submitted", draft.pk)] == ["ada"]
    assert audit_trail("template.version_published", draft.pk) == [
        ("rory", {"template": "shapes", "number": 1, "author": "ada"})
    ]


def test_the_author_cannot_approve_their_own_version_even_as_a_reviewer(draft, author, audit_trail):
    from governance.roles import Role, role_grant

    role_grant(user=author, role=Role.REVIEWER, granted_by=None)
    template_version_submit(version=draft, by=author)
    with pytest.raises(SelfApprovalForbidden):
        template_version_publish(version=draft, approved_by=author)
    draft.refresh_from_db()
    assert draft.status == TemplateStatus.SUBMITTED
    assert audit_trail("template.version_published") == []


def test_whoever_submitted_a_version_cannot_approve_it(draft, reviewer):
    template_version_submit(version=draft, by=reviewer)
    with pytest.raises(SelfApprovalForbidden):
        template_version_publish(version=draft, approved_by=reviewer)


def test_publishing_needs_the_reviewer_role(draft, author, outsider):
    template_version_submit(version=draft, by=author)
    with pytest.raises(RoleRequired, match="reviewer"):
        template_version_publish(version=draft, approved_by=outsider)


def test_a_draft_cannot_be_published_without_submission(draft, reviewer):
    with pytest.raises(InvalidTransition, match="draft; it cannot become published"):
        template_version_publish(version=draft, approved_by=reviewer)


def test_a_rejected_version_records_why_and_cannot_be_published_later(
    draft, author, reviewer, audit_trail
):
    template_version_submit(version=draft, by=author)
    template_version_reject(version=draft, rejected_by=reviewer, reason="colour list too short")
    draft.refresh_from_db()
    assert (draft.status, draft.rejection_reason) == ("rejected", "colour list too short")
    assert audit_trail("template.version_rejected", draft.pk)[0][1]["reason"] == (
        "colour list too short"
    )
    with pytest.raises(InvalidTransition):
        template_version_publish(version=draft, approved_by=reviewer)


def test_a_retired_version_no_longer_renders_for_requests(draft, author, reviewer, audit_trail):
    version = published(draft, author, reviewer)
    template_version_retire(version=version, retired_by=reviewer)
    with pytest.raises(TemplateNotPublished):
        template_version_render(version=version, values=VALUES)
    assert [actor for actor, _ in audit_trail("template.version_retired", draft.pk)] == ["rory"]


# --- rendering for requests -----------------------------------------------------------


def test_only_a_published_version_renders_for_a_request_and_a_draft_only_in_preview(draft):
    with pytest.raises(TemplateNotPublished, match="draft"):
        template_version_render(version=draft, values=VALUES)
    preview = template_version_render(version=draft, values=VALUES, preview=True)
    assert preview.caption == "a small blue star, white background"


def test_a_published_version_renders_japanese_choices_to_english_with_the_lint(
    draft, author, reviewer
):
    version = published(draft, author, reviewer)
    rendered = template_version_render(
        version=version, values={**VALUES, "colour": "青"}, language="ja"
    )
    assert rendered.caption == "a small blue star, white background"
    assert rendered.values_used["colour"] == {"value": "blue", "source": "given", "label": "青"}
    assert rendered.lint.ok and rendered.lint.positions["shape"] == 4
    assert rendered.template_version_id == version.pk


def test_rendering_refuses_bad_values_naming_them(draft, author, reviewer):
    version = published(draft, author, reviewer)
    with pytest.raises(CaptionRenderError) as caught:
        template_version_render(version=version, values={"size": "small", "hue": "red"})
    assert set(caught.value.errors) == {"hue", "colour", "shape"}


def test_a_caption_with_a_banned_term_is_refused_for_a_request(
    draft, author, reviewer, administrator
):
    version = published(draft, author, reviewer)
    lint_term_create(
        kind=LintTermKind.BANNED, term="star", reason="trademark", created_by=administrator
    )
    with pytest.raises(TemplateLintFailed, match="banned term 'star'"):
        template_version_render(version=version, values={**VALUES, "shape": "s t a r"})


# --- live lint ------------------------------------------------------------------------


def test_live_lint_reports_variable_problems_as_findings_instead_of_raising(draft):
    lint = caption_lint(version=draft, values={"size": "small", "colour": "green"})
    assert [(f.rule, f.variable) for f in lint.errors] == [
        ("variables", "colour"),
        ("variables", "shape"),
    ]


def test_live_lint_of_a_good_caption_is_fast(draft):
    caption_lint(version=draft, values=VALUES)  # warm the caches
    started = time.perf_counter()
    for _ in range(20):
        lint = caption_lint(version=draft, values=VALUES)
    assert lint.ok and lint.token_count == 9
    assert (time.perf_counter() - started) / 20 < 0.050


def test_the_long_caption_rule_uses_the_model_cards_typical_length(
    tiny_checkpoint_dir, author, audit_trail
):
    from governance.captions.services import template_create

    card = {"typical_caption_tokens": 3, "license": "internal use"}
    model_version_register(
        model_name="carded",
        sources=sources_from_directory(tiny_checkpoint_dir),
        registered_by=None,
        model_card=card,
    )
    template = template_create(name="c", title="C", model_name="carded", created_by=author)
    version = template_version_create(template=template, created_by=author, **SHAPES)
    lint = caption_lint(version=version, values=VALUES)
    assert [(f.rule, f.severity) for f in lint.findings] == [("caption_length", "warning")]
    assert "7 tokens, over 2x the 3-token captions" in lint.findings[0].message
    assert version.lint_report["policy"]["typical_caption_tokens"] == 3


# --- the organisation's term lists ----------------------------------------------------


def test_only_an_administrator_changes_the_term_lists_and_each_change_is_audited(
    administrator, outsider, audit_trail
):
    with pytest.raises(RoleRequired):
        lint_term_create(kind="banned", term="cheap", reason="brand", created_by=outsider)
    term = lint_term_create(kind="banned", term="cheap", reason="brand", created_by=administrator)
    with pytest.raises(TemplateSchemaError, match="already listed"):
        lint_term_create(kind="banned", term="ＣＨＥＡＰ", reason="again", created_by=administrator)
    lint_term_deactivate(lint_term=term, deactivated_by=administrator)
    assert audit_trail("lint_term.added", term.pk) == [
        ("adele", {"kind": "banned", "term": "cheap", "template": None, "reason": "brand"})
    ]
    assert audit_trail("lint_term.deactivated", term.pk) == [
        ("adele", {"kind": "banned", "term": "cheap"})
    ]


def test_a_required_term_for_one_template_applies_to_that_template_only(
    draft, template, administrator
):
    lint_term_create(
        kind="required",
        term="studio photo",
        reason="disclaimer",
        template=template,
        created_by=administrator,
    )
    lint = caption_lint(version=draft, values=VALUES)
    assert [(f.rule, f.message) for f in lint.errors] == [
        ("required_term", "required term 'studio photo' is missing")
    ]
