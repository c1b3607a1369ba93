"""OpenAPI component names for serializers nested in their endpoint class.

Every endpoint nests its own ``InputSerializer``/``OutputSerializer``; named by class alone
they would collide, so a nested serializer is named after its endpoint too
(``TokenObtainApi.InputSerializer`` → ``TokenObtainInput``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField()


class ErrorSerializer(serializers.Serializer):
    """The one error envelope of config/api_errors.py."""

    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    "400": "Invalid input (the fields name what is wrong).",
    "401": "Not signed in, or a wrong token.",
    "403": "The user lacks the role, or the rule forbids it (self-approval).",
    "404": "No such object, or not visible to this user.",
    "409": "The object is not in a state that allows this.",
    "429": "Throttled, or over the team's quota.",
    "503": "A backing service (database, broker, object store) is unavailable.",
}


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer: Any, direction: str) -> str:
        qualname = type(serializer).__qualname__
        if "." not in qualname:
            return str(super().get_serializer_name(serializer, direction))
        outer, inner = qualname.split(".")[-2:]
        outer = outer.removesuffix("Api")
        return f"{outer}{inner.removesuffix('Serializer')}"

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        # The error responses each operation can give, so clients (and the API fuzzer in
        # tests/reliability/) can rely on the documented status codes.
        responses = dict(super()._get_response_bodies(direction))
        if direction != "response":
            return responses
        writes = self.method not in ("GET", "HEAD", "OPTIONS")
        codes = {"401", "503"}
        if writes or any(p.get("in") == "query" for p in self._get_parameters()):
            codes.add("400")
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes.add("403")
        if "{" in self.path:
            codes.add("404")
        if writes:
            codes |= {"409", "429"}
        for code in sorted(codes - set(responses)):
            response = self._get_response_for_code(ErrorSerializer, code)
            response["description"] = ERROR_DESCRIPTIONS[code]
            responses[code] = response
        return responses
