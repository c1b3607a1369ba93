"""Published caption templates, their form fields, and live lint while a form is filled in."""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import get_language
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from generation.serializers import StrictSerializer
from governance.captions.models import TemplateVersion
from governance.captions.services import caption_lint
from web import presentation, selectors
from web.api.common import ServiceApi


class LanguageField(serializers.CharField):
    """A language of the platform (``settings.LANGUAGES``), checked when used."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(max_length=8, **kwargs)  # type: ignore[arg-type]

    def to_internal_value(self, data: object) -> str:
        from django.conf import settings

        value = super().to_internal_value(data)
        codes = [code for code, _ in settings.LANGUAGES]
        if value not in codes:
            raise serializers.ValidationError(f"must be one of {', '.join(codes)}")
        return value


class FieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(choices=["text", "choice", "number"])
    label = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    required = serializers.BooleanField()
    default = serializers.CharField(allow_null=True)
    key = serializers.BooleanField()
    choices = serializers.ListField(child=serializers.DictField(child=serializers.CharField()))
    max_length = serializers.IntegerField(allow_null=True)
    charset = serializers.CharField(allow_null=True)
    minimum = serializers.CharField(allow_null=True)
    maximum = serializers.CharField(allow_null=True)
    step = serializers.CharField(allow_null=True)


class TemplateVersionSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="template.name")
    title = serializers.CharField(source="template.title")
    description = serializers.CharField(source="template.description")
    model = serializers.CharField(source="template.model.name")

    class Meta:
        model = TemplateVersion
        fields = ["id", "name", "number", "title", "description", "model", "published_at"]
        read_only_fields = fields


class TemplateListApi(ListAPIView):
    """The newest published version of every caption template."""

    serializer_class = TemplateVersionSerializer

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.published_versions()


class TemplateDetailApi(ServiceApi):
    """A published version with its form fields (labels in the request's language)."""

    class OutputSerializer(TemplateVersionSerializer):
        checklist = serializers.ListField(child=serializers.CharField())
        form_fields = serializers.SerializerMethodField()

        class Meta(TemplateVersionSerializer.Meta):
            fields = [*TemplateVersionSerializer.Meta.fields, "pattern", "checklist", "form_fields"]
            read_only_fields = fields

        @extend_schema_field(FieldSerializer(many=True))
        def get_form_fields(self, version: TemplateVersion) -> list[dict[str, object]]:
            fields = presentation.variable_fields(version, get_language() or "en")
            return FieldSerializer(fields, many=True).data  # type: ignore[return-value]

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, version_id: int) -> Response:
        return Response(self.OutputSerializer(_published(version_id)).data)


class CaptionLintApi(ServiceApi):
    """Lint the caption some values would make: token count, key positions, findings."""

    class InputSerializer(StrictSerializer):
        values = serializers.DictField(child=serializers.JSONField(), allow_empty=True)
        language = LanguageField(required=False, default="en")

    class OutputSerializer(serializers.Serializer):
        caption = serializers.CharField(allow_blank=True)
        token_count = serializers.IntegerField()
        ok = serializers.BooleanField()
        positions = serializers.DictField(child=serializers.IntegerField())
        key_variables = serializers.ListField(child=serializers.CharField())
        key_position_limit = serializers.IntegerField()
        context_length = serializers.IntegerField()
        findings = serializers.ListField(child=serializers.DictField())

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, version_id: int) -> Response:
        version = _published(version_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        lint = caption_lint(version=version, **data.validated_data)
        view = presentation.lint_view(lint, presentation.key_variables(version))
        return Response(self.OutputSerializer(view).data)


def _published(version_id: int) -> TemplateVersion:
    version = selectors.published_version(version_id)
    if version is None:
        raise Http404("no published template version with this id")
    return version
