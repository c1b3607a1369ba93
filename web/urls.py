"""The pages: requesters, reviewers, auditors, model and platform administrators."""

from django.contrib.auth import views as auth_views
from django.urls import path

import web.converters  # noqa: F401  (registers <id:...>)
from web import views

urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("templates/", views.TemplateListView.as_view(), name="templates"),
    path("templates/<id:version_id>/new/", views.RequestFormView.as_view(), name="request-new"),
    path("requests/", views.RequestListView.as_view(), name="requests"),
    path("requests/<uuid:request_id>/", views.RequestDetailView.as_view(), name="request-detail"),
    path("review/", views.ReviewQueueView.as_view(), name="review-queue"),
    path("review/<uuid:output_id>/", views.ReviewView.as_view(), name="review"),
    path("audit/", views.AuditSearchView.as_view(), name="audit"),
    path("audit/verify/", views.AuditVerifyView.as_view(), name="audit-verify"),
    path("audit/events/", views.AuditEventsView.as_view(), name="audit-events"),
    path("audit/outputs/<uuid:output_id>/", views.LineageView.as_view(), name="lineage"),
    path("models/", views.ModelListView.as_view(), name="models"),
    path("models/<slug:model_name>/", views.ModelDetailView.as_view(), name="model-detail"),
    path("dashboard/", views.DashboardView.as_view(), name="dashboard"),
    path("integrations/", views.IntegrationsView.as_view(), name="integrations"),
]
