"""API input and output shapes for jobs and outputs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from generation.models import GenerationJob, Output
from generation.services import MAX_SEED


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know instead of silently dropping them."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class SamplingInputSerializer(StrictSerializer):
    cfg = serializers.FloatField(required=False, min_value=0.0, max_value=50.0)
    top_k = serializers.IntegerField(required=False, min_value=0, max_value=65536)
    top_p = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    more_smooth = serializers.BooleanField(required=False)


class JobCreateInputSerializer(StrictSerializer):
    caption = serializers.CharField(max_length=2000, trim_whitespace=True)
    model = serializers.CharField(required=False, max_length=200)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=MAX_SEED)
    sampling = SamplingInputSerializer(required=False)
    priority = serializers.IntegerField(required=False, min_value=0, max_value=9, default=5)


class OutputSerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.__str__", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Output
        fields = [
            "id", "job", "caption", "seed", "sampling", "model_version", "sha256",
            "size_bytes", "width", "height", "created_at", "download_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_download_url(self, obj: Output) -> str:
        return f"/api/v1/outputs/{obj.id}/download/"


class JobSerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.__str__", read_only=True)
    output = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.get_username", read_only=True)

    class Meta:
        model = GenerationJob
        fields = [
            "id", "created_by", "caption", "seed", "sampling", "model_version",
            "model_reference", "status", "priority", "progress", "scales_done", "scales_total",
            "caption_tokens", "caption_truncated", "failure_reason", "attempts",
            "cancel_requested", "created_at", "started_at", "finished_at", "output",
        ]  # fmt: skip
        read_only_fields = fields

    def get_output(self, obj: GenerationJob) -> str | None:
        if self.context.get("just_created"):
            return None  # the job was created by this request: no output can exist yet
        output = getattr(obj, "output", None)
        return str(output.id) if output is not None else None
