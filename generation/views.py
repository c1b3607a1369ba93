"""Server-rendered pages of the generation side."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.views.generic import TemplateView

from generation.models import GenerationJob


class HomeView(LoginRequiredMixin, TemplateView):
    """The signed-in user's recent jobs with their status, progress and output."""

    template_name = "home.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        jobs = GenerationJob.objects.select_related("model_version__model", "output")
        if not self.request.user.is_staff:
            jobs = jobs.filter(created_by=self.request.user)
        context["jobs"] = jobs[:50]
        return context
