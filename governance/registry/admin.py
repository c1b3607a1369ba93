from django.contrib import admin

from governance.registry.models import (
    AliasMove,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    WeightFile,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Registry rows change only through the registry services, never by hand."""

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


for _model in (RegisteredModel, ModelVersion, WeightFile, ModelAlias, AliasMove):
    admin.site.register(_model, ReadOnlyAdmin)
