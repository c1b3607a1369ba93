"""OpenAPI component names for serializers nested in their endpoint class.

Every endpoint nests its own ``InputSerializer``/``OutputSerializer``; named by class alone
they would collide, so a nested serializer is named after its endpoint too
(``TokenObtainApi.InputSerializer`` → ``TokenObtainInput``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    def get_serializer_name(self, serializer: Any, direction: str) -> str:
        qualname = type(serializer).__qualname__
        if "." not in qualname:
            return str(super().get_serializer_name(serializer, direction))
        outer, inner = qualname.split(".")[-2:]
        outer = outer.removesuffix("Api")
        return f"{outer}{inner.removesuffix('Serializer')}"
