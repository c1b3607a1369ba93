"""The pilot dashboard's numbers, and webhooks and team quotas for administrators."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from generation.serializers import StrictSerializer
from governance.approvals.metrics import pilot_metrics
from governance.approvals.models import Team
from governance.integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from governance.integrations.services import (
    team_quota_set,
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
)
from governance.integrations.webhooks import WEBHOOK_EVENTS
from governance.roles import Role
from web import selectors
from web.api.account import QuotaSerializer
from web.api.common import ServiceApi, has_role, parse_query

DASHBOARD_READERS = has_role(Role.AUDITOR, Role.REVIEWER, Role.MODEL_ADMIN, Role.ADMINISTRATOR)
ADMINISTRATORS = has_role(Role.ADMINISTRATOR)


class MetricsSerializer(serializers.Serializer):
    key = serializers.CharField(required=False)
    requests = serializers.IntegerField()
    images = serializers.IntegerField()
    decided = serializers.IntegerField()
    approved = serializers.IntegerField()
    approval_rate = serializers.FloatField(allow_null=True)
    regenerations = serializers.IntegerField()
    regenerations_per_approved = serializers.FloatField(allow_null=True)
    median_hours_to_approval = serializers.FloatField(allow_null=True)


class DayCountSerializer(serializers.Serializer):
    date = serializers.DateField()
    requests = serializers.IntegerField()


class DashboardApi(ServiceApi):
    """Pilot metrics for requests made in a date range (default: the last 30 days)."""

    permission_classes = [DASHBOARD_READERS]

    class FilterSerializer(serializers.Serializer):
        since = serializers.DateField(required=False)
        until = serializers.DateField(required=False)

    class OutputSerializer(serializers.Serializer):
        since = serializers.DateField()
        until = serializers.DateField()
        per_day = DayCountSerializer(many=True)
        overall = MetricsSerializer()
        by_template = MetricsSerializer(many=True)
        by_model_version = MetricsSerializer(many=True)

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(pilot_metrics(**dashboard_range(request))).data)


def dashboard_range(request: Any) -> dict[str, Any]:
    """``since``/``until`` from the query, defaulting to the 30 days up to today."""
    values = parse_query(DashboardApi.FilterSerializer, request)
    return default_range(values.get("since"), values.get("until"))


def default_range(since: Any = None, until: Any = None) -> dict[str, Any]:
    """The range to show: the 30 days up to ``until`` (today) unless ``since`` is given."""
    until = until or timezone.localdate()
    return {"since": since or until - timedelta(days=29), "until": until}


class EndpointSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.get_username", allow_null=True)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "events", "active", "created_by", "created_at"]
        read_only_fields = fields


class WebhookListCreateApi(ServiceApi, ListAPIView):
    """Webhook endpoints; registering one returns its signing secret, this once only."""

    serializer_class = EndpointSerializer
    permission_classes = [ADMINISTRATORS]

    class InputSerializer(StrictSerializer):
        url = serializers.URLField(max_length=500)
        events = serializers.ListField(
            child=serializers.ChoiceField(choices=list(WEBHOOK_EVENTS)), min_length=1
        )
        description = serializers.CharField(
            required=False, default="", allow_blank=True, max_length=200
        )

    class CreatedSerializer(EndpointSerializer):
        class Meta(EndpointSerializer.Meta):
            fields = [*EndpointSerializer.Meta.fields, "secret"]
            read_only_fields = fields

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return WebhookEndpoint.objects.select_related("created_by")

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_create(created_by=request.user, **data.validated_data)
        return Response(self.CreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookDeactivateApi(ServiceApi):
    """Stop sending to an endpoint (its delivery log stays)."""

    permission_classes = [ADMINISTRATORS]

    @extend_schema(request=None, responses=EndpointSerializer)
    def post(self, request: Request, endpoint_id: int) -> Response:
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        endpoint = webhook_endpoint_deactivate(endpoint=endpoint, by=request.user)
        return Response(EndpointSerializer(endpoint).data)


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "at", "status_code", "error", "duration_ms"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    log = AttemptSerializer(many=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "event_type", "event_sequence", "status", "attempts", "next_attempt_at",
            "last_status_code", "last_error", "delivered_at", "created_at", "log",
        ]  # fmt: skip
        read_only_fields = fields


class WebhookDeliveryListApi(ListAPIView):
    """An endpoint's delivery log, newest first, each with its attempts."""

    serializer_class = DeliverySerializer
    permission_classes = [ADMINISTRATORS]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        endpoint = get_object_or_404(WebhookEndpoint, pk=self.kwargs["endpoint_id"])
        return endpoint.deliveries.prefetch_related("log").order_by("-created_at")


class QuotaListSetApi(ServiceApi):
    """Every team's quota today, or set one team's daily image quota (null removes it)."""

    permission_classes = [ADMINISTRATORS]

    class InputSerializer(StrictSerializer):
        # An unknown team is a 400 naming the field, like any other bad input.
        team = serializers.SlugRelatedField(slug_field="name", queryset=Team.objects.all())
        daily_images = serializers.IntegerField(min_value=0, max_value=10**6, allow_null=True)

    @extend_schema(responses=QuotaSerializer(many=True))
    def get(self, request: Request) -> Response:
        quotas = selectors.team_quotas(Team.objects.order_by("name"))
        return Response(QuotaSerializer(quotas, many=True).data)

    @extend_schema(request=InputSerializer, responses=QuotaSerializer)
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = data.validated_data["team"]
        team_quota_set(team=team, daily_images=data.validated_data["daily_images"], by=request.user)
        return Response(QuotaSerializer(selectors.team_quotas([team])[0]).data)
