"""Admin pages: read-only records; alias move requests are decided through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from governance.errors import GovernanceError
from governance.registry.models import (
    AliasMove,
    AliasMoveRequest,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    WeightFile,
)
from governance.registry.services import RegistryError, alias_move_approve


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Registry rows change only through the registry services, never by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


for _model in (RegisteredModel, ModelVersion, WeightFile, ModelAlias, AliasMove):
    admin.site.register(_model, ReadOnlyAdmin)


@admin.register(AliasMoveRequest)
class AliasMoveRequestAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "status", "requested_by", "decided_by", "requested_at")
    list_filter = ("status",)
    actions = ["approve_selected"]

    @admin.action(description="Approve the selected alias moves")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[AliasMoveRequest]) -> None:
        for move_request in queryset:
            try:
                alias_move_approve(move_request=move_request, approved_by=request.user)  # type: ignore[arg-type]
            except (GovernanceError, RegistryError) as exc:
                self.message_user(request, f"{move_request}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{move_request} approved", messages.SUCCESS)
