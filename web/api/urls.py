"""The REST API under /api/v1/ beside the job and output endpoints of generation/urls.py."""

from django.urls import path

import web.converters  # noqa: F401  (registers <id:...>)
from web.api import account, auditing, catalog, pilot, registry, review, work

urlpatterns = [
    path("auth/token/", account.TokenObtainApi.as_view(), name="api-token"),
    path("me/", account.MeApi.as_view(), name="api-me"),
    path("templates/", catalog.TemplateListApi.as_view(), name="api-templates"),
    path("templates/<id:version_id>/", catalog.TemplateDetailApi.as_view(), name="api-template"),
    path(
        "templates/<id:version_id>/lint/", catalog.CaptionLintApi.as_view(), name="api-caption-lint"
    ),
    path("requests/", work.RequestListCreateApi.as_view(), name="api-requests"),
    path("requests/<uuid:request_id>/", work.RequestDetailApi.as_view(), name="api-request"),
    path(
        "requests/<uuid:request_id>/changes/",
        work.RequestChangesApi.as_view(),
        name="api-request-changes",
    ),
    path("reviews/queue/", review.ReviewQueueApi.as_view(), name="api-review-queue"),
    path("outputs/<uuid:output_id>/review/", review.OutputReviewApi.as_view(), name="api-review"),
    path(
        "outputs/<uuid:output_id>/lineage/",
        review.OutputLineageApi.as_view(),
        name="api-output-lineage",
    ),
    path("models/", registry.ModelListApi.as_view(), name="api-models"),
    path("models/<slug:model_name>/", registry.ModelDetailApi.as_view(), name="api-model"),
    path(
        "models/<slug:model_name>/aliases/<slug:alias>/history/",
        registry.AliasHistoryApi.as_view(),
        name="api-alias-history",
    ),
    path("alias-moves/", registry.AliasMoveListCreateApi.as_view(), name="api-alias-moves"),
    path(
        "alias-moves/<id:move_id>/approve/",
        registry.AliasMoveApproveApi.as_view(),
        name="api-alias-move-approve",
    ),
    path(
        "alias-moves/<id:move_id>/reject/",
        registry.AliasMoveRejectApi.as_view(),
        name="api-alias-move-reject",
    ),
    path("audit/outputs/", auditing.OutputSearchApi.as_view(), name="api-output-search"),
    path("audit/outputs/export/", auditing.OutputExportApi.as_view(), name="api-output-export"),
    path("audit/events/", auditing.AuditEventSearchApi.as_view(), name="api-audit-events"),
    path(
        "audit/events/export/",
        auditing.AuditEventExportApi.as_view(),
        name="api-audit-events-export",
    ),
    path("audit/chain/", auditing.AuditChainApi.as_view(), name="api-audit-chain"),
    path("audit/chain/verify/", auditing.AuditChainVerifyApi.as_view(), name="api-audit-verify"),
    path("dashboard/", pilot.DashboardApi.as_view(), name="api-dashboard"),
    path("webhooks/", pilot.WebhookListCreateApi.as_view(), name="api-webhooks"),
    path(
        "webhooks/<id:endpoint_id>/deactivate/",
        pilot.WebhookDeactivateApi.as_view(),
        name="api-webhook-deactivate",
    ),
    path(
        "webhooks/<id:endpoint_id>/deliveries/",
        pilot.WebhookDeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path("quotas/", pilot.QuotaListSetApi.as_view(), name="api-quotas"),
]
