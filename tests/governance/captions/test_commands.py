"""The caption commands: lint a caption or a whole version, load the demo templates."""

import pytest
from django.core.management import CommandError, call_command

from governance.audit.models import AuditEvent
from governance.captions.models import TemplateStatus, TemplateVersion

pytestmark = pytest.mark.django_db


def run(*args):
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_lint_caption_prints_the_caption_its_tokens_and_findings(draft):
    out = run("lint_caption", "shapes:1", "--var", "size=small", "--var", "colour=青",
              "--var", "shape=star", "--language", "ja")  # fmt: skip
    assert '"a small blue star, white background"' in out
    assert "9 tokens incl. start/end; starts: size@2, colour@3, shape@4, background@6" in out
    assert "no findings" in out


def test_lint_caption_fails_on_lint_errors_naming_the_variable(draft):
    with pytest.raises(CommandError, match="1 lint error"):
        run("lint_caption", "shapes:1", "--var", "size=small", "--var", "colour=red")
    with pytest.raises(CommandError, match="template 'shapes' has no published version"):
        run("lint_caption", "shapes", "--var", "size=small")


def test_lint_caption_without_values_prints_the_version_report(draft):
    out = run("lint_caption", "shapes:1")
    assert "0 error(s)" in out
    assert "example 1:" in out and "longest shape:" in out


def test_the_demo_templates_are_published_by_a_reviewer_other_than_their_author(model_version):
    out = run("load_demo_templates")
    versions = TemplateVersion.objects.select_related("created_by", "published_by")
    assert sorted(v.template.name for v in versions) == [
        "background-first",
        "shape-on-background",
        "shape-over-colour",
    ]
    for version in versions:
        assert version.status == TemplateStatus.PUBLISHED
        assert version.created_by.username == "demo-template-author"
        assert version.published_by.username == "demo-template-reviewer"
        assert version.lint_report["errors"] == 0
    assert AuditEvent.objects.filter(action="template.version_published").count() == 3
    assert "0 error(s), 0 warning(s)" in out
    assert run("load_demo_templates").count("already published") == 3


def test_a_demo_caption_renders_from_japanese_labels(model_version):
    from governance.captions.services import template_version_render, template_version_resolve

    run("load_demo_templates", "--quiet-report")
    rendered = template_version_render(
        version=template_version_resolve("shape-on-background"),
        values={"size": "大きい", "colour": "赤", "shape": "円", "background": "青"},
        language="ja",
    )
    assert rendered.caption == "a large red circle in the centre, blue background"
