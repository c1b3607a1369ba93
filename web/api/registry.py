"""The model registry for model administrators: versions with their cards and weight hashes,
aliases and their history, and production moves through a second administrator's approval."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from generation.serializers import StrictSerializer
from governance.registry.models import (
    AliasMove,
    AliasMoveRequest,
    AliasMoveRequestStatus,
    ModelAlias,
    ModelVersion,
    RegisteredModel,
    WeightFile,
)
from governance.registry.services import (
    alias_history,
    alias_move_approve,
    alias_move_reject,
    alias_move_request,
)
from governance.roles import Role
from web import selectors
from web.api.common import ServiceApi, has_role, parse_query

REGISTRY_READERS = has_role(Role.MODEL_ADMIN, Role.AUDITOR)
REGISTRY_WRITERS = has_role(Role.MODEL_ADMIN)


class WeightSerializer(serializers.ModelSerializer):
    class Meta:
        model = WeightFile
        fields = ["role", "uri", "sha256", "size_bytes"]
        read_only_fields = fields


class VersionSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="__str__")
    registered_by = serializers.CharField(source="registered_by.get_username", allow_null=True)
    weights = WeightSerializer(many=True)

    class Meta:
        model = ModelVersion
        fields = [
            "name", "version", "model_card", "sampling_defaults", "registered_by", "created_at",
            "weights",
        ]  # fmt: skip
        read_only_fields = fields


class AliasSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="version.__str__")

    class Meta:
        model = ModelAlias
        fields = ["name", "version", "updated_at"]
        read_only_fields = fields


class ModelSerializer(serializers.ModelSerializer):
    versions = VersionSerializer(many=True)
    aliases = AliasSerializer(many=True)

    class Meta:
        model = RegisteredModel
        fields = ["name", "description", "created_at", "versions", "aliases"]
        read_only_fields = fields


class MoveRequestSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    from_version = serializers.CharField(source="from_version.__str__", allow_null=True)
    to_version = serializers.CharField(source="to_version.__str__")
    requested_by = serializers.CharField(source="requested_by.get_username")
    decided_by = serializers.CharField(source="decided_by.get_username", allow_null=True)

    class Meta:
        model = AliasMoveRequest
        fields = [
            "id", "model", "alias_name", "from_version", "to_version", "reason", "requested_by",
            "requested_at", "status", "decided_by", "decided_at", "decision_note",
        ]  # fmt: skip
        read_only_fields = fields


class ModelListApi(ListAPIView):
    """Registered models with their versions (cards, weight hashes) and aliases."""

    serializer_class = ModelSerializer
    permission_classes = [REGISTRY_READERS]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.registered_models()


class ModelDetailApi(ServiceApi):
    """One registered model."""

    permission_classes = [REGISTRY_READERS]

    @extend_schema(responses=ModelSerializer)
    def get(self, request: Request, model_name: str) -> Response:
        model = get_object_or_404(selectors.registered_models(), name=model_name)
        return Response(ModelSerializer(model).data)


class AliasHistoryApi(ServiceApi):
    """Every move of one alias, newest first, with who asked and who approved."""

    permission_classes = [REGISTRY_READERS]

    class OutputSerializer(serializers.ModelSerializer):
        from_version = serializers.CharField(source="from_version.__str__", allow_null=True)
        to_version = serializers.CharField(source="to_version.__str__")
        moved_by = serializers.CharField(source="moved_by.get_username", allow_null=True)
        requested_by = serializers.CharField(
            source="request.requested_by.get_username", allow_null=True
        )

        class Meta:
            model = AliasMove
            fields = [
                "id", "from_version", "to_version", "moved_by", "requested_by", "reason",
                "moved_at",
            ]  # fmt: skip
            read_only_fields = fields

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request, model_name: str, alias: str) -> Response:
        moves = alias_history(model_name=model_name, alias=alias)
        return Response(self.OutputSerializer(moves, many=True).data)


class AliasMoveListCreateApi(ServiceApi, ListAPIView):
    """List alias move requests, or ask for a protected alias to move (promote or roll back)."""

    serializer_class = MoveRequestSerializer

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(required=False, choices=AliasMoveRequestStatus.choices)
        model = serializers.CharField(required=False, max_length=64)

    class InputSerializer(StrictSerializer):
        model = serializers.CharField(max_length=64)
        alias = serializers.CharField(max_length=64)
        version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
        reason = serializers.CharField(max_length=2000)

    def get_permissions(self):  # type: ignore[no-untyped-def]
        return [(REGISTRY_WRITERS if self.request.method == "POST" else REGISTRY_READERS)()]

    @extend_schema(parameters=[FilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.alias_move_requests(**parse_query(self.FilterSerializer, self.request))

    @extend_schema(request=InputSerializer, responses={201: MoveRequestSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        move = alias_move_request(
            model_name=values["model"],
            alias=values["alias"],
            version=values["version"],
            requested_by=request.user,
            reason=values["reason"],
        )
        return Response(MoveRequestSerializer(move).data, status=status.HTTP_201_CREATED)


class AliasMoveApproveApi(ServiceApi):
    """Approve a pending move (a model administrator who neither asked nor registered)."""

    permission_classes = [REGISTRY_WRITERS]

    @extend_schema(request=None, responses=MoveRequestSerializer)
    def post(self, request: Request, move_id: int) -> Response:
        move = get_object_or_404(AliasMoveRequest, pk=move_id)
        alias_move_approve(move_request=move, approved_by=request.user)
        return Response(MoveRequestSerializer(selectors.alias_move_requests().get(pk=move_id)).data)


class AliasMoveRejectApi(ServiceApi):
    """Refuse a pending move with a reason; the alias stays where it is."""

    permission_classes = [REGISTRY_WRITERS]

    class InputSerializer(StrictSerializer):
        reason = serializers.CharField(max_length=2000)

    @extend_schema(request=InputSerializer, responses=MoveRequestSerializer)
    def post(self, request: Request, move_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        move = get_object_or_404(AliasMoveRequest, pk=move_id)
        move = alias_move_reject(move_request=move, rejected_by=request.user, **data.validated_data)
        return Response(MoveRequestSerializer(move).data)
