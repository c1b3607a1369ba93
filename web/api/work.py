"""Generation requests: submit from a template, follow each variation, request changes."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from generation.models import ReviewStatus
from generation.serializers import StrictSerializer
from governance.approvals import selectors as approval_selectors
from governance.approvals.models import GenerationRequest, Team
from governance.approvals.services import MAX_VARIATIONS, request_changes, request_create
from web import selectors
from web.api.catalog import LanguageField
from web.api.common import ServiceApi, SubmissionThrottle, parse_query


class RequestOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    review_status = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    sha256 = serializers.CharField()
    download_url = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_download_url(self, output: Any) -> str | None:
        if output.pk not in self.context.get("downloadable", set()):
            return None
        return f"/api/v1/outputs/{output.pk}/download/"


class RequestJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    variation = serializers.IntegerField()
    seed = serializers.IntegerField()
    status = serializers.CharField()
    progress = serializers.FloatField()
    scales_done = serializers.IntegerField()
    scales_total = serializers.IntegerField()
    failure_reason = serializers.CharField()
    output = serializers.SerializerMethodField()

    @extend_schema_field(RequestOutputSerializer(allow_null=True))
    def get_output(self, job: Any) -> dict[str, Any] | None:
        output = getattr(job, "output", None)
        return RequestOutputSerializer(output, context=self.context).data if output else None


class RequestSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.name")
    requested_by = serializers.CharField(source="requested_by.get_username")
    template_version = serializers.CharField(source="template_version.__str__")
    template_version_id = serializers.IntegerField()
    model_version = serializers.CharField(source="model_version.__str__")
    jobs = serializers.SerializerMethodField()

    class Meta:
        model = GenerationRequest
        fields = [
            "id", "team", "requested_by", "template_version", "template_version_id", "values",
            "values_used", "language", "caption", "lint", "variations", "model_version",
            "parent", "created_at", "jobs",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(RequestJobSerializer(many=True))
    def get_jobs(self, request: GenerationRequest) -> list[dict[str, Any]]:
        jobs = sorted(request.jobs.all(), key=lambda job: job.variation or 0)
        outputs = [job.output for job in jobs if getattr(job, "output", None)]
        viewer = self.context["request"].user
        context = {"downloadable": selectors.downloadable_ids(viewer, outputs)}
        return RequestJobSerializer(jobs, many=True, context=context).data  # type: ignore[return-value]


class RequestListCreateApi(ServiceApi, ListAPIView):
    """List the requests you may see, or submit one from a published template version."""

    serializer_class = RequestSerializer
    throttle_classes = [SubmissionThrottle]

    class FilterSerializer(serializers.Serializer):
        team = serializers.CharField(required=False, max_length=64)
        template = serializers.CharField(required=False, max_length=64)
        mine = serializers.BooleanField(required=False, default=False)
        review_status = serializers.ChoiceField(required=False, choices=ReviewStatus.choices)

    class InputSerializer(StrictSerializer):
        template_version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
        values = serializers.DictField(child=serializers.JSONField())
        variations = serializers.IntegerField(min_value=1, max_value=MAX_VARIATIONS, default=1)
        language = LanguageField(required=False, default="en")
        team = serializers.CharField(required=False, max_length=64)

    @extend_schema(parameters=[FilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.request_list(
            self.request.user, **parse_query(self.FilterSerializer, self.request)
        )

    @extend_schema(request=InputSerializer, responses={201: RequestSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        version = selectors.published_version(values.pop("template_version"))
        if version is None:
            raise serializers.ValidationError(
                {"template_version": ["no published version with this id"]}
            )
        team = _team(values.pop("team", None))
        created = request_create(
            requested_by=request.user, template_version=version, team=team, **values
        )
        body = RequestSerializer(
            selectors.request_detail(request.user, created.pk), context={"request": request}
        )
        return Response(body.data, status=status.HTTP_201_CREATED)


class RequestDetailApi(ServiceApi):
    """One request with each variation's job progress and output review status (poll it)."""

    @extend_schema(responses=RequestSerializer)
    def get(self, request: Request, request_id: str) -> Response:
        found = selectors.request_detail(request.user, request_id)
        if found is None:
            raise Http404
        return Response(RequestSerializer(found, context={"request": request}).data)


class RequestChangesApi(ServiceApi):
    """A reviewer sends a request back: its pending outputs are marked and a child regenerates."""

    class InputSerializer(StrictSerializer):
        comment = serializers.CharField(max_length=2000)
        values = serializers.DictField(child=serializers.JSONField(), required=False)
        new_seeds = serializers.BooleanField(required=False, default=True)

    @extend_schema(request=InputSerializer, responses={201: RequestSerializer})
    def post(self, request: Request, request_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        parent = get_object_or_404(approval_selectors.visible_requests(request.user), pk=request_id)
        child = request_changes(request=parent, by=request.user, **data.validated_data)
        body = RequestSerializer(
            selectors.request_detail(request.user, child.pk), context={"request": request}
        )
        return Response(body.data, status=status.HTTP_201_CREATED)


def _team(name: str | None) -> Team | None:
    if name is None:
        return None
    team = Team.objects.filter(name=name).first()
    if team is None:
        raise serializers.ValidationError({"team": [f"no team named {name!r}"]})
    return team
