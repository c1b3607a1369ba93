from django.contrib import admin

from generation.models import GenerationJob, Output


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "status", "created_by", "model_version", "progress", "created_at"]
    list_filter = ["status"]
    readonly_fields = [field.name for field in GenerationJob._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "sha256", "model_version", "created_at"]
    readonly_fields = [field.name for field in Output._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
