from django.urls import path

from generation import api

urlpatterns = [
    path("jobs/", api.JobListCreateApi.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>/", api.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<uuid:job_id>/cancel/", api.JobCancelApi.as_view(), name="job-cancel"),
    path("outputs/<uuid:output_id>/", api.OutputDetailApi.as_view(), name="output-detail"),
    path(
        "outputs/<uuid:output_id>/download/",
        api.OutputDownloadApi.as_view(),
        name="output-download",
    ),
]
