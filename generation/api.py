"""REST endpoints for jobs and outputs: parse, call one service, serialize."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from generation.models import GenerationJob, JobStatus, Output
from generation.serializers import JobCreateInputSerializer, JobSerializer, OutputSerializer
from generation.services import JobInputError, job_cancel, job_create
from generation.storage import get_store
from governance.approvals import selectors


def visible_jobs(request: Request) -> QuerySet[GenerationJob]:
    """Jobs the user may see (governance.approvals.selectors decides)."""
    return selectors.visible_jobs(request.user)


def visible_outputs(request: Request) -> QuerySet[Output]:
    """Outputs whose record the user may see; downloads are narrower (approved only)."""
    return selectors.visible_outputs(request.user)


def _withheld(output: Output) -> str:
    if output.purged_at is not None:
        return "this output's image was purged by retention; its record remains"
    status = output.get_review_status_display().lower()
    return f"this output is {status}; only approved outputs are released for download"


class JobListCreateApi(ListAPIView):
    serializer_class = JobSerializer
    throttle_scope = "submission"

    def get_throttles(self):  # type: ignore[no-untyped-def]
        return [ScopedRateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=[s.value for s in JobStatus])],
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[GenerationJob]:
        jobs = visible_jobs(self.request)
        wanted = self.request.query_params.get("status")
        if wanted is not None:
            if wanted not in JobStatus.values:
                raise ValidationError({"status": [f"must be one of {', '.join(JobStatus.values)}"]})
            jobs = jobs.filter(status=wanted)
        return jobs

    @extend_schema(request=JobCreateInputSerializer, responses={201: JobSerializer})
    def post(self, request: Request) -> Response:
        data = JobCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            job = job_create(
                created_by=request.user,
                caption=values["caption"],
                model_reference=values.get("model"),
                seed=values.get("seed"),
                sampling=dict(values.get("sampling", {})),
                priority=values["priority"],
            )
        except JobInputError as exc:
            raise ValidationError({key: [msg] for key, msg in exc.errors.items()}) from exc
        body = JobSerializer(job, context={"just_created": True}).data
        return Response(body, status=status.HTTP_201_CREATED)


def visible_job(request: Request, job_id: str) -> GenerationJob:
    """The job if the user may see it (one query), else a 404."""
    job = selectors.visible_job(request.user, job_id)
    if job is None:
        raise Http404
    return job


class JobDetailApi(APIView):
    @extend_schema(responses=JobSerializer)
    def get(self, request: Request, job_id: str) -> Response:
        return Response(JobSerializer(visible_job(request, job_id)).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobSerializer)
    def post(self, request: Request, job_id: str) -> Response:
        from generation.models import InvalidTransition

        job = visible_job(request, job_id)
        try:
            job = job_cancel(job_id=job.pk)
        except InvalidTransition as exc:
            raise ValidationError({"status": [f"a {job.status} job cannot be cancelled"]}) from exc
        return Response(JobSerializer(visible_job(request, job.pk)).data)


class OutputDetailApi(APIView):
    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, output_id: str) -> Response:
        output = get_object_or_404(visible_outputs(request), pk=output_id)
        return Response(OutputSerializer(output).data)


class OutputDownloadApi(APIView):
    @extend_schema(
        responses={
            (200, "image/png"): OpenApiTypes.BINARY,
            302: OpenApiResponse(description="Redirect to a presigned S3 URL"),
        }
    )
    def get(self, request: Request, output_id: str) -> FileResponse | HttpResponseRedirect:
        output = get_object_or_404(visible_outputs(request), pk=output_id)
        if not selectors.downloadable_outputs(request.user).filter(pk=output.pk).exists():
            raise PermissionDenied(_withheld(output))
        store = get_store()
        filename = f"{output.id}.png"
        url = store.download_url(output.storage_key, filename)
        if url is not None:
            return HttpResponseRedirect(url)
        import io

        return FileResponse(
            io.BytesIO(store.get(output.storage_key)),
            as_attachment=True,
            filename=filename,
            content_type="image/png",
        )
