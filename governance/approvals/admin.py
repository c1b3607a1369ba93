"""Admin pages: read-only records, and a review queue whose actions call the review services.

Approving or rejecting from the admin goes through ``review_bulk_approve``/``review_decide``,
so separation of duties, the checklist and the flagged-output reason hold here too.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from generation.models import ReviewStatus
from governance.approvals.models import (
    GenerationRequest,
    OutputReview,
    ReviewDecision,
    Team,
    TeamMembership,
)
from governance.approvals.selectors import with_flags
from governance.approvals.services import review_bulk_approve, review_decide
from governance.errors import GovernanceError


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TeamMembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = TeamMembership
    fields = ("user", "added_by", "added_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(ReadOnlyAdmin):
    list_display = ("name", "title", "created_at")
    inlines = [TeamMembershipInline]


@admin.register(GenerationRequest)
class GenerationRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "team", "requested_by", "template_version", "variations", "model_version",
        "legal_hold", "created_at",
    )  # fmt: skip
    list_filter = ("team", "legal_hold")
    search_fields = ("caption", "requested_by__username")


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(ReadOnlyAdmin):
    list_display = ("output", "decision", "reviewer", "flagged", "decided_at")
    list_filter = ("decision", "flagged")


@admin.register(OutputReview)
class OutputReviewAdmin(ReadOnlyAdmin):
    """Pending outputs; approve or reject them through the review services."""

    list_display = ("id", "caption", "requester", "is_flagged", "model_version", "created_at")
    actions = ["approve_selected", "reject_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutputReview]:
        pending = (
            super()
            .get_queryset(request)
            .filter(review_status=ReviewStatus.PENDING, purged_at__isnull=True)
        )
        return with_flags(pending).select_related(  # type: ignore[return-value]
            "job__request__requested_by", "job__created_by", "model_version__model"
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Any staff member may open the queue; the services decide who may decide.
        return bool(request.user.is_active and request.user.is_staff)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    @admin.display(description="requested by")
    def requester(self, obj: OutputReview) -> str:
        request = obj.job.request
        return str(request.requested_by if request else obj.job.created_by)

    @admin.display(boolean=True, description="flagged")
    def is_flagged(self, obj: OutputReview) -> bool:
        return bool(getattr(obj, "flagged", False))

    @admin.action(description="Approve the selected outputs…")
    def approve_selected(
        self, request: HttpRequest, queryset: QuerySet[OutputReview]
    ) -> HttpResponse | None:
        return self._decide(request, queryset, "approve_selected")

    @admin.action(description="Reject the selected outputs…")
    def reject_selected(
        self, request: HttpRequest, queryset: QuerySet[OutputReview]
    ) -> HttpResponse | None:
        return self._decide(request, queryset, "reject_selected")

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[OutputReview], action: str
    ) -> HttpResponse | None:
        outputs = list(queryset.select_related("job__request__template_version"))
        # 1. first the form: the checklist of every template version involved
        if "apply" not in request.POST:
            return self._form(request, outputs, action)
        # 2. then the services, which refuse what the rules refuse
        ticks = request.POST.getlist("checklist")
        try:
            if action == "approve_selected":
                review_bulk_approve(
                    outputs=outputs,
                    reviewer=request.user,  # type: ignore[arg-type]
                    checklist=ticks,
                    flagged_reason=request.POST.get("flagged_reason", ""),
                )
            else:
                for output in outputs:
                    review_decide(
                        output=output,
                        reviewer=request.user,  # type: ignore[arg-type]
                        decision="rejected",
                        comment=request.POST.get("comment", ""),
                    )
        except GovernanceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None
        verb = "approved" if action == "approve_selected" else "rejected"
        self.message_user(request, f"{len(outputs)} output(s) {verb}", messages.SUCCESS)
        return None

    def _form(self, request: HttpRequest, outputs: list[Any], action: str) -> HttpResponse:
        checklist: list[str] = []
        for output in outputs:
            request_row = output.job.request
            for item in request_row.template_version.checklist if request_row else []:
                if item not in checklist:
                    checklist.append(item)
        context = {
            **self.admin_site.each_context(request),
            "title": "Approve outputs" if action == "approve_selected" else "Reject outputs",
            "opts": self.model._meta,
            "outputs": outputs,
            "checklist": checklist,
            "action": action,
            "approving": action == "approve_selected",
            "any_flagged": any(getattr(output, "flagged", False) for output in outputs),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/approvals/review_outputs.html", context)
