"""The review desk: the queue, one decision on one output, and an output's lineage."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from generation.models import Output
from generation.serializers import StrictSerializer
from governance.approvals import selectors as approval_selectors
from governance.approvals.lineage import output_lineage
from governance.approvals.models import Decision, ReviewDecision
from governance.approvals.services import review_decide
from governance.roles import Role
from web.api.common import ServiceApi, has_role


class QueueItemSerializer(serializers.ModelSerializer):
    request = serializers.UUIDField(source="job.request_id", allow_null=True)
    variation = serializers.IntegerField(source="job.variation", allow_null=True)
    template_version = serializers.SerializerMethodField()
    values_used = serializers.SerializerMethodField()
    checklist = serializers.SerializerMethodField()
    flagged = serializers.BooleanField()
    model_version = serializers.CharField(source="model_version.__str__")
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Output
        fields = [
            "id", "request", "variation", "caption", "template_version", "values_used",
            "checklist", "flagged", "model_version", "seed", "created_at", "image_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_template_version(self, output: Output) -> str | None:
        request = output.job.request
        return str(request.template_version) if request else None

    def get_values_used(self, output: Output) -> dict[str, Any]:
        request = output.job.request
        return dict(request.values_used) if request else {}

    def get_checklist(self, output: Output) -> list[str]:
        request = output.job.request
        return list(request.template_version.checklist) if request else []

    def get_image_url(self, output: Output) -> str:
        return f"/api/v1/outputs/{output.pk}/download/"


class ReviewQueueApi(ListAPIView):
    """Pending outputs you may decide, oldest first (your own requests are left out)."""

    serializer_class = QueueItemSerializer
    permission_classes = [has_role(Role.REVIEWER)]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return approval_selectors.review_queue(self.request.user)


class OutputReviewApi(ServiceApi):
    """Approve (every checklist item ticked) or reject (with a comment) one output."""

    class InputSerializer(StrictSerializer):
        decision = serializers.ChoiceField(
            choices=[Decision.APPROVED.value, Decision.REJECTED.value]
        )
        checklist = serializers.ListField(
            child=serializers.CharField(max_length=500), required=False, default=list
        )
        comment = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=2000
        )
        flagged_reason = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=2000
        )

    class OutputSerializer(serializers.ModelSerializer):
        reviewer = serializers.CharField(source="reviewer.get_username")
        review_status = serializers.CharField(source="output.review_status")

        class Meta:
            model = ReviewDecision
            fields = [
                "id", "output", "decision", "reviewer", "checklist", "comment", "flagged",
                "flagged_reason", "decided_at", "review_status",
            ]  # fmt: skip
            read_only_fields = fields

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request, output_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        output = get_object_or_404(approval_selectors.visible_outputs(request.user), pk=output_id)
        decision = review_decide(output=output, reviewer=request.user, **data.validated_data)
        return Response(self.OutputSerializer(decision).data, status=status.HTTP_201_CREATED)


class OutputLineageApi(ServiceApi):
    """Every step from request to review of one output, with its audit events."""

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, output_id: str) -> Response:
        output = get_object_or_404(approval_selectors.visible_outputs(request.user), pk=output_id)
        return Response(output_lineage(output=output))
