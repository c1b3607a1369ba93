"""Signing in for a token, and who the signed-in user is."""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from generation.serializers import StrictSerializer
from web import selectors
from web.api.common import LoginThrottle, ServiceApi


class QuotaSerializer(serializers.Serializer):
    team = serializers.CharField()
    limit = serializers.IntegerField(allow_null=True)
    used = serializers.IntegerField()
    remaining = serializers.IntegerField(allow_null=True)
    resets_at = serializers.DateTimeField()


class TokenObtainApi(ServiceApi):
    """Exchange a username and password for an API token (rate-limited per address and name)."""

    permission_classes = [AllowAny]
    # Token authentication only names the scheme, so a wrong password is a 401 (not a 403).
    authentication_classes = [TokenAuthentication]
    throttle_classes = [LoginThrottle]

    class InputSerializer(StrictSerializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    class OutputSerializer(serializers.Serializer):
        token = serializers.CharField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer, auth=[])
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise exceptions.AuthenticationFailed("unknown username or wrong password")
        token, _ = Token.objects.get_or_create(user=user)
        return Response(self.OutputSerializer({"token": token.key}).data)


class MeApi(ServiceApi):
    """The signed-in user: roles, teams and each team's quota today."""

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        roles = serializers.ListField(child=serializers.CharField())
        teams = serializers.ListField(child=serializers.CharField())
        quotas = QuotaSerializer(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        teams = selectors.user_teams(request.user)
        me = {
            "username": request.user.get_username(),
            "roles": selectors.user_roles(request.user),
            "teams": [team.name for team in teams],
            "quotas": selectors.team_quotas(teams),
        }
        return Response(self.OutputSerializer(me).data)
