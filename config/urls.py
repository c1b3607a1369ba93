from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config.health import HealthApi
from web.api.common import api_not_found

api_v1 = [
    path("health/", HealthApi.as_view(), name="health"),
    path("", include("generation.urls")),
    path("", include("web.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    # [\s\S], not ".": a path with an encoded newline must still get the JSON 404.
    re_path(r"^[\s\S]*$", api_not_found),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", include(api_v1)),
    path("", include("web.urls")),
]
