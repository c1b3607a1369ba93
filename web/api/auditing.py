"""For auditors: output search and export, event search and export, the chain's standing."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from generation.models import Output, ReviewStatus
from governance.approvals.search import output_export, output_search
from governance.audit.actions import AuditAction
from governance.audit.models import AuditEvent
from governance.audit.services import SEARCH_MAX_LIMIT, audit_export, audit_search
from governance.roles import Role
from web import chain
from web.api.common import ServiceApi, has_role, parse_query

AUDITORS = has_role(Role.AUDITOR)
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
EXPORT_RESPONSES = {
    (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, one row per record"),
    (200, "application/x-ndjson"): OpenApiResponse(
        OpenApiTypes.STR, description="JSON Lines, one object per record"
    ),
}


class OutputFilterSerializer(serializers.Serializer):
    person = serializers.CharField(required=False, max_length=150)
    template = serializers.CharField(required=False, max_length=80)
    model_version = serializers.CharField(required=False, max_length=80)
    review_status = serializers.ChoiceField(required=False, choices=ReviewStatus.choices)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    caption = serializers.CharField(required=False, max_length=200)


class ExportFormatSerializer(serializers.Serializer):
    file_format = serializers.ChoiceField(choices=["csv", "jsonl"], default="csv")


class OutputSearchApi(ServiceApi, ListAPIView):
    """Outputs you may read that match every filter (person: requester or any reviewer)."""

    class OutputSerializer(serializers.ModelSerializer):
        request = serializers.UUIDField(source="job.request_id", allow_null=True)
        model_version = serializers.CharField(source="model_version.__str__")

        class Meta:
            model = Output
            fields = [
                "id", "request", "caption", "model_version", "seed", "sha256", "review_status",
                "purged_at", "created_at",
            ]  # fmt: skip
            read_only_fields = fields

    serializer_class = OutputSerializer

    @extend_schema(parameters=[OutputFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):  # type: ignore[no-untyped-def]
        filters = parse_query(OutputFilterSerializer, self.request)
        return output_search(viewer=self.request.user, **filters).order_by("-created_at", "-pk")


class ExportApi(ServiceApi):
    """A download: any Accept header is served (errors still come back as JSON)."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return super().perform_content_negotiation(request, force=True)


class OutputExportApi(ExportApi):
    """Stream the matching outputs as CSV or JSON Lines (audited: who, filters, row count)."""

    @extend_schema(
        parameters=[OutputFilterSerializer, ExportFormatSerializer], responses=EXPORT_RESPONSES
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        filters = parse_query(OutputFilterSerializer, request)
        fmt = parse_query(ExportFormatSerializer, request)["file_format"]
        outputs = output_search(viewer=request.user, **filters)
        chunks = output_export(outputs=outputs, fmt=fmt, actor=request.user, filters=filters)
        return _download(chunks, fmt, "outputs")


class EventFilterSerializer(serializers.Serializer):
    actor = serializers.CharField(required=False, max_length=150)
    action = serializers.ChoiceField(required=False, choices=AuditAction.choices)
    target_type = serializers.CharField(required=False, max_length=64)
    target_id = serializers.CharField(required=False, max_length=128)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    text = serializers.CharField(required=False, max_length=200)


class EventPageSerializer(EventFilterSerializer):
    after_sequence = serializers.IntegerField(required=False, min_value=0, max_value=2**62)
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=SEARCH_MAX_LIMIT, default=100
    )
    newest_first = serializers.BooleanField(required=False, default=False)


class EventSerializer(serializers.ModelSerializer):
    payload = serializers.JSONField()

    class Meta:
        model = AuditEvent
        fields = [
            "sequence", "occurred_at", "actor_id", "actor_username", "action", "target_type",
            "target_id", "payload", "request_id", "client_ip", "prev_hash", "hash",
        ]  # fmt: skip
        read_only_fields = fields


class AuditEventSearchApi(ServiceApi):
    """One keyset page of audit events; pass ``next_after_sequence`` on for the next page."""

    permission_classes = [AUDITORS]

    class OutputSerializer(serializers.Serializer):
        results = EventSerializer(many=True)
        next_after_sequence = serializers.IntegerField(allow_null=True)

    @extend_schema(parameters=[EventPageSerializer], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        page = audit_search(**parse_query(EventPageSerializer, request))
        body = {"results": page.events, "next_after_sequence": page.next_after_sequence}
        return Response(self.OutputSerializer(body).data)


class AuditEventExportApi(ExportApi):
    """Stream the matching events as CSV or JSON Lines (the export is itself audited)."""

    permission_classes = [AUDITORS]

    @extend_schema(
        parameters=[EventFilterSerializer, ExportFormatSerializer], responses=EXPORT_RESPONSES
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        filters = parse_query(EventFilterSerializer, request)
        fmt = parse_query(ExportFormatSerializer, request)["file_format"]
        return _download(audit_export(filters, fmt, actor=request.user), fmt, "audit-events")


class ChainSerializer(serializers.Serializer):
    head_sequence = serializers.IntegerField()
    head_hash = serializers.CharField(allow_null=True)
    last_anchor = serializers.DictField(allow_null=True)
    last_verification = serializers.DictField(allow_null=True)


class AuditChainApi(ServiceApi):
    """The chain's head, its newest anchor and the last verification's result."""

    permission_classes = [AUDITORS]

    @extend_schema(responses=ChainSerializer)
    def get(self, request: Request) -> Response:
        return Response(ChainSerializer(chain.chain_status()).data)


class AuditChainVerifyApi(ServiceApi):
    """Recompute every event's hash and check the latest anchors now."""

    permission_classes = [AUDITORS]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request) -> Response:
        return Response(chain.chain_verify(request.user))


def _download(chunks: Any, fmt: str, name: str) -> StreamingHttpResponse:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{fmt}"'
    return response
