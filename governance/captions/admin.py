"""Admin pages: read-only records; every change goes through the caption services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from governance.captions.models import LintTerm, Template, TemplateVersion
from governance.captions.services import (
    lint_term_create,
    lint_term_deactivate,
    template_version_publish,
)
from governance.errors import GovernanceError
from governance.roles import Role, user_has_role


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Template)
class TemplateAdmin(ReadOnlyAdmin):
    list_display = ("name", "title", "model", "owner", "created_at")


@admin.register(TemplateVersion)
class TemplateVersionAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "status", "created_by", "published_by", "created_at")
    list_filter = ("status",)
    actions = ["publish_selected"]

    @admin.action(description="Approve and publish the selected submitted versions")
    def publish_selected(self, request: HttpRequest, queryset: QuerySet[TemplateVersion]) -> None:
        # The same service as everywhere else, so separation of duties holds here too.
        for version in queryset:
            try:
                template_version_publish(version=version, approved_by=request.user)  # type: ignore[arg-type]
            except GovernanceError as exc:
                self.message_user(request, f"{version}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{version} published", messages.SUCCESS)


@admin.register(LintTerm)
class LintTermAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("term", "kind", "template", "active", "created_by", "created_at")
    list_filter = ("kind", "active")
    fields = ("kind", "term", "template", "reason")
    actions = ["deactivate_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return user_has_role(request.user, Role.ADMINISTRATOR)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Terms are added or deactivated, never edited: the action needs the change right.
        return obj is None and user_has_role(request.user, Role.ADMINISTRATOR)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LintTerm, form: Any, change: bool) -> None:
        created = lint_term_create(
            kind=obj.kind,
            term=obj.term,
            reason=obj.reason,
            template=obj.template,
            created_by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = created.pk

    @admin.action(description="Deactivate the selected terms")
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet[LintTerm]) -> None:
        for term in queryset.filter(active=True):
            lint_term_deactivate(lint_term=term, deactivated_by=request.user)  # type: ignore[arg-type]
        self.message_user(request, "deactivated", messages.SUCCESS)
