"""Server-rendered pages for requesters, reviewers, auditors, model and platform administrators.

Each page reads through the selectors and writes through one service; a refused call shows
a translated headline above the service's own explanation. Every page checks on the server
who may see it; forms are CSRF-protected and Django escapes all text.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.generic import TemplateView

from governance.approvals import selectors as approval_selectors
from governance.approvals.lineage import output_lineage
from governance.approvals.metrics import pilot_metrics
from governance.approvals.models import Team
from governance.approvals.search import output_search
from governance.approvals.services import (
    MAX_VARIATIONS,
    request_changes,
    request_create,
    review_decide,
)
from governance.audit.actions import AuditAction
from governance.audit.services import audit_search
from governance.integrations.models import WebhookEndpoint
from governance.integrations.services import (
    team_quota_set,
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
)
from governance.integrations.webhooks import WEBHOOK_EVENTS
from governance.registry.models import AliasMoveRequest
from governance.registry.services import (
    alias_history,
    alias_move_approve,
    alias_move_reject,
    alias_move_request,
)
from governance.roles import Role, user_has_role
from web import chain, charts, presentation, selectors
from web.api.auditing import EventFilterSerializer, OutputFilterSerializer
from web.api.common import LoginThrottle
from web.api.pilot import DashboardApi, default_range
from web.errors import SERVICE_ERRORS, refusal

PAGE_SIZE = 24


# --- shared -------------------------------------------------------------------------------


class Page(LoginRequiredMixin, TemplateView):
    """A signed-in page; with ``roles``, only for holders of one of them."""

    roles: tuple[Role, ...] = ()

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if self.roles and not any(user_has_role(request.user, role) for role in self.roles):
            names = ", ".join(str(presentation.ROLE_NAMES[role.value]) for role in self.roles)
            raise PermissionDenied(
                _("This page needs one of these roles: %(roles)s") % {"roles": names}
            )
        return super().dispatch(request, *args, **kwargs)

    def act(self, request: HttpRequest, call: Any, success: str) -> bool:
        """Run one service call; show ``success`` or the refusal; return whether it worked."""
        try:
            call()
        except SERVICE_ERRORS as exc:
            show_refusal(request, exc)
            return False
        messages.success(request, success)
        return True


def show_refusal(request: HttpRequest, exc: BaseException) -> None:
    """Put a refused service call on the page: translated headline, then the details."""
    refused = refusal(exc)
    body = format_html("<strong>{}</strong><br><span>{}</span>", refused.headline, refused.detail)
    messages.error(request, body, extra_tags="refusal")


def _page(request: HttpRequest, items: Any) -> Any:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _query(request: HttpRequest, **extra: str) -> str:
    pairs = [(k, v) for k, v in request.GET.items() if k != "page" and v]
    return urlencode(pairs + list(extra.items()))


def _valid(serializer_class: Any, data: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    checked = serializer_class(data=data)
    if not checked.is_valid():
        return {}, dict(checked.errors)
    return {k: v for k, v in checked.validated_data.items() if v not in (None, "")}, {}


class LoginView(auth_views.LoginView):
    """Sign-in, limited per client address and username like the token endpoint."""

    template_name = "web/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        throttle = LoginThrottle()
        if not throttle.allow_request(request, self):
            wait = int(throttle.wait() or 60)
            form = self.get_form()
            form.add_error(
                None,
                _("Too many sign-in attempts. Try again in %(seconds)d seconds.")
                % {"seconds": wait},
            )
            response = self.render_to_response(self.get_context_data(form=form), status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)


class HomeView(Page):
    """What each role does next: templates, requests, the review queue, the audit desk."""

    template_name = "web/home.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        user = self.request.user
        teams = selectors.user_teams(user)
        return {
            **super().get_context_data(**kwargs),
            "roles": selectors.user_roles(user),
            "quotas": selectors.team_quotas(teams),
            "recent": selectors.request_list(user, mine=True)[:5],
            "queue_size": approval_selectors.review_queue(user).count(),
        }


# --- requesters ---------------------------------------------------------------------------


class TemplateListView(Page):
    """The published caption templates to start a request from."""

    template_name = "web/templates.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "versions": selectors.published_versions()}


class RequestFormView(Page):
    """A form made from the template's variables, with live lint; submitting makes a request."""

    template_name = "web/request_form.html"

    def version(self) -> Any:
        version = selectors.published_version(self.kwargs["version_id"])
        if version is None:
            raise Http404(_("No published template version with this id."))
        return version

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        version = self.version()
        language = get_language() or "en"
        teams = list(selectors.user_teams(self.request.user))
        return {
            **super().get_context_data(**kwargs),
            "version": version,
            "fields": presentation.variable_fields(version, language),
            "values": kwargs.get("values", {}),
            "field_errors": kwargs.get("field_errors", {}),
            "variations": kwargs.get("variations", 3),
            "variation_choices": range(1, MAX_VARIATIONS + 1),
            "teams": teams,
            "quotas": selectors.team_quotas(teams),
            "lint_url": f"/api/v1/templates/{version.pk}/lint/",
            "language": language,
            "js_strings": {
                "tokens": _("%(count)s of 77 tokens"),
                "noFindings": _("No findings: the caption reads well for the model."),
                "keyMark": _("20-token mark"),
                "limitMark": _("77-token limit"),
                "unavailable": _("Live lint is unavailable right now."),
            },
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        version = self.version()
        fields = presentation.variable_fields(version, get_language() or "en")
        values = {
            f["name"]: request.POST.get(f["name"], "").strip()
            for f in fields
            if request.POST.get(f["name"], "").strip() or f["required"]
        }
        variations = _int(request.POST.get("variations"), default=1)
        team = Team.objects.filter(name=request.POST.get("team") or "").first()
        try:
            created = request_create(
                requested_by=request.user,
                template_version=version,
                values=values,
                variations=variations,
                language=get_language() or "en",
                team=team,
            )
        except SERVICE_ERRORS as exc:
            show_refusal(request, exc)
            errors = {
                key.removeprefix("values."): value for key, value in refusal(exc).fields.items()
            }
            context = self.get_context_data(
                values=values, field_errors=errors, variations=variations
            )
            return self.render_to_response(context, status=refusal(exc).status)
        messages.success(
            request,
            _("Request submitted: %(count)d image(s) queued.") % {"count": created.variations},
        )
        return redirect("request-detail", request_id=created.pk)


class RequestListView(Page):
    """The requests of your teams, newest first, with each one's progress."""

    template_name = "web/requests.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        mine = self.request.GET.get("mine") == "1"
        items = selectors.request_list(self.request.user, mine=mine)
        return {
            **super().get_context_data(**kwargs),
            "page": _page(self.request, items),
            "mine": mine,
            "query": _query(self.request),
        }


class RequestDetailView(Page):
    """Live progress of every variation, then the gallery with each output's review status."""

    template_name = "web/request_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        found = selectors.request_detail(self.request.user, self.kwargs["request_id"])
        if found is None:
            raise Http404(_("No such request, or it is not one of your teams'."))
        jobs = list(found.jobs.all())
        outputs = [job.output for job in jobs if getattr(job, "output", None)]
        return {
            **super().get_context_data(**kwargs),
            "req": found,
            "jobs": jobs,
            "downloadable": selectors.downloadable_ids(self.request.user, outputs),
            "finished": all(job.is_terminal for job in jobs),
            "poll_url": f"/api/v1/requests/{found.pk}/",
            "js_strings": {
                "queued": str(presentation.JOB_STATUS_NAMES["queued"]),
                "running": str(presentation.JOB_STATUS_NAMES["running"]),
                "succeeded": str(presentation.JOB_STATUS_NAMES["succeeded"]),
                "failed": str(presentation.JOB_STATUS_NAMES["failed"]),
                "cancelled": str(presentation.JOB_STATUS_NAMES["cancelled"]),
                "scales": _("scale %(done)s of %(total)s"),
            },
        }


# --- reviewers ----------------------------------------------------------------------------


class ReviewQueueView(Page):
    """Pending outputs grouped by request, oldest first; your own requests are left out."""

    roles = (Role.REVIEWER,)
    template_name = "web/review_queue.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        groups: dict[Any, dict[str, Any]] = {}
        for output in approval_selectors.review_queue(self.request.user)[:200]:
            key = output.job.request_id or output.pk
            group = groups.setdefault(key, {"request": output.job.request, "outputs": []})
            group["outputs"].append(output)
        return {**super().get_context_data(**kwargs), "groups": list(groups.values())}


class ReviewView(Page):
    """One output beside its caption, values, variations and checklist; decide or send back."""

    roles = (Role.REVIEWER,)
    template_name = "web/review.html"

    def output(self) -> Any:
        output = selectors.review_item(self.request.user, self.kwargs["output_id"])
        if output is None:
            raise Http404(_("No such output."))
        return output

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        output = self.output()
        request = output.job.request
        queue = list(
            approval_selectors.review_queue(self.request.user).values_list("pk", flat=True)[:200]
        )
        following = [pk for pk in queue if pk != output.pk]
        return {
            **super().get_context_data(**kwargs),
            "output": output,
            "req": request,
            "checklist": list(request.template_version.checklist) if request else [],
            "siblings": selectors.siblings(output),
            "next_id": following[0] if following else None,
            "decided": output.review_status != "pending",
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        output = self.output()
        action = request.POST.get("action")
        comment = request.POST.get("comment", "")
        if action == "changes" and output.job.request_id:
            done = self.act(
                request,
                lambda: request_changes(
                    request=output.job.request, by=request.user, comment=comment
                ),
                _("Sent back: a new request regenerates with new seeds."),
            )
        else:
            decision = "approved" if action == "approve" else "rejected"
            done = self.act(
                request,
                lambda: review_decide(
                    output=output,
                    reviewer=request.user,
                    decision=decision,
                    checklist=request.POST.getlist("checklist"),
                    comment=comment,
                    flagged_reason=request.POST.get("flagged_reason", ""),
                ),
                _("Approved: the image is released.") if decision == "approved" else _("Rejected."),
            )
        next_id = request.POST.get("next")
        if done and next_id:
            return redirect("review", output_id=next_id)
        if done:
            return redirect("review-queue")
        return self.render_to_response(self.get_context_data(), status=403)


# --- auditors -----------------------------------------------------------------------------


class AuditSearchView(Page):
    """Output search with filters, exports of what matches, and the chain's standing."""

    roles = (Role.AUDITOR,)
    template_name = "web/audit_search.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        filters, errors = _valid(OutputFilterSerializer, self.request.GET)
        results = None
        if not errors:
            try:
                results = _page(
                    self.request,
                    output_search(viewer=self.request.user, **filters).order_by(
                        "-created_at", "-pk"
                    ),
                )
            except SERVICE_ERRORS as exc:
                errors = refusal(exc).fields or {"__all__": [refusal(exc).detail]}
        return {
            **super().get_context_data(**kwargs),
            "filters": self.request.GET,
            "errors": errors,
            "results": results,
            "query": _query(self.request),
            "statuses": presentation.REVIEW_STATUS_NAMES,
            "chain": chain.chain_status(),
        }


class AuditVerifyView(Page):
    """Verify the audit chain now (POST), then back to the audit page."""

    roles = (Role.AUDITOR,)
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        result = chain.chain_verify(request.user)
        if result["ok"]:
            messages.success(
                request,
                _("The audit chain verified: %(count)d events intact.")
                % {"count": result["checked"]},
            )
        else:
            messages.error(
                request,
                _("The audit chain is broken: %(problem)s") % {"problem": result["problems"][0]},
            )
        query = request.GET.urlencode()
        return redirect(reverse("audit") + (f"?{query}" if query else ""))


class LineageView(Page):
    """Every step from request to review of one output, and its audit events."""

    roles = (Role.AUDITOR,)
    template_name = "web/lineage.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        output = get_object_or_404(
            approval_selectors.visible_outputs(self.request.user), pk=self.kwargs["output_id"]
        )
        return {
            **super().get_context_data(**kwargs),
            "lineage": output_lineage(output=output),
            "output": output,
        }


class AuditEventsView(Page):
    """Search the audit trail itself; export what matches."""

    roles = (Role.AUDITOR,)
    template_name = "web/audit_events.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        filters, errors = _valid(EventFilterSerializer, self.request.GET)
        after = _int(self.request.GET.get("after"), default=None)
        page = None
        if not errors:
            try:
                page = audit_search(**filters, after_sequence=after, limit=50, newest_first=True)
            except SERVICE_ERRORS as exc:
                errors = refusal(exc).fields
        return {
            **super().get_context_data(**kwargs),
            "filters": self.request.GET,
            "errors": errors,
            "page": page,
            "actions": AuditAction.choices,
            "query": _query(self.request),
            "next_query": _query(self.request, after=str(page.next_after_sequence))
            if page and page.next_after_sequence
            else "",
        }


# --- model administrators -----------------------------------------------------------------


class ModelListView(Page):
    """Registered models, their aliases and pending production moves."""

    roles = (Role.MODEL_ADMIN, Role.AUDITOR)
    template_name = "web/models.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "models": selectors.registered_models(),
            "pending": selectors.alias_move_requests(status=selectors.PENDING_MOVE),
        }


class ModelDetailView(Page):
    """Versions with model cards and weight hashes, alias history, promote and roll back."""

    roles = (Role.MODEL_ADMIN, Role.AUDITOR)
    template_name = "web/model_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        model = get_object_or_404(selectors.registered_models(), name=self.kwargs["model_name"])
        aliases = list(model.aliases.all())
        return {
            **super().get_context_data(**kwargs),
            "model": model,
            "aliases": aliases,
            "histories": [
                (alias, alias_history(model_name=model.name, alias=alias.name)) for alias in aliases
            ],
            "moves": selectors.alias_move_requests(model=model.name)[:50],
            "can_act": user_has_role(self.request.user, Role.MODEL_ADMIN),
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not user_has_role(request.user, Role.MODEL_ADMIN):
            raise PermissionDenied(_("Only model administrators change aliases."))
        name = self.kwargs["model_name"]
        action = request.POST.get("action")
        move = AliasMoveRequest.objects.filter(pk=_int(request.POST.get("move"), 0)).first()
        if action == "request":
            self.act(
                request,
                lambda: alias_move_request(
                    model_name=name,
                    alias=request.POST.get("alias", ""),
                    version=_int(request.POST.get("version"), 0),
                    requested_by=request.user,
                    reason=request.POST.get("reason", ""),
                ),
                _("Move requested: a second model administrator must approve it."),
            )
        elif action == "approve" and move is not None:
            self.act(
                request,
                lambda: alias_move_approve(move_request=move, approved_by=request.user),
                _("Move approved: the alias now points at the new version."),
            )
        elif action == "reject" and move is not None:
            self.act(
                request,
                lambda: alias_move_reject(
                    move_request=move,
                    rejected_by=request.user,
                    reason=request.POST.get("reason", ""),
                ),
                _("Move rejected."),
            )
        else:
            messages.error(request, _("Unknown action."))
        return redirect("model-detail", model_name=name)


# --- pilot dashboard and integrations -----------------------------------------------------


class DashboardView(Page):
    """Requests per day, time to an approved image, approval rate, regenerations."""

    roles = (Role.AUDITOR, Role.REVIEWER, Role.MODEL_ADMIN, Role.ADMINISTRATOR)
    template_name = "web/dashboard.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        window, errors = _valid(DashboardApi.FilterSerializer, self.request.GET)
        try:
            metrics = pilot_metrics(**default_range(**window))
        except SERVICE_ERRORS as exc:
            errors = refusal(exc).fields
        if errors:
            messages.error(
                self.request,
                _("Invalid date range: %(detail)s")
                % {"detail": "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in errors.items())},
            )
            metrics = pilot_metrics(**default_range())
        return {
            **context,
            "metrics": metrics,
            "per_day_chart": charts.bar_chart(
                [(day["date"][5:], day["requests"]) for day in metrics["per_day"]]
            ),
            "approval_chart": charts.bar_chart(
                [
                    (row["key"], round(100 * (row["approval_rate"] or 0)))
                    for row in metrics["by_template"]
                ],
                unit="%",
            ),
        }


class IntegrationsView(Page):
    """Webhook endpoints with their delivery log, and team quotas (administrators)."""

    roles = (Role.ADMINISTRATOR,)
    template_name = "web/integrations.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        endpoints = WebhookEndpoint.objects.prefetch_related("deliveries").order_by("-created_at")
        return {
            **super().get_context_data(**kwargs),
            "endpoints": [(e, e.deliveries.order_by("-created_at")[:10]) for e in endpoints],
            "events": WEBHOOK_EVENTS,
            "quotas": selectors.team_quotas(Team.objects.order_by("name")),
            "secret": kwargs.get("secret"),
        }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        action = request.POST.get("action")
        if action == "create":
            created: list[WebhookEndpoint] = []
            ok = self.act(
                request,
                lambda: created.append(
                    webhook_endpoint_create(
                        url=request.POST.get("url", ""),
                        events=request.POST.getlist("events"),
                        description=request.POST.get("description", ""),
                        created_by=request.user,
                    )
                ),
                _("Webhook registered. Copy its secret now: it is shown only once."),
            )
            if ok:
                return self.render_to_response(self.get_context_data(secret=created[0].secret))
        elif action == "deactivate":
            endpoint = get_object_or_404(WebhookEndpoint, pk=_int(request.POST.get("id"), 0))
            self.act(
                request,
                lambda: webhook_endpoint_deactivate(endpoint=endpoint, by=request.user),
                _("Webhook deactivated."),
            )
        elif action == "quota":
            team = get_object_or_404(Team, name=request.POST.get("team", ""))
            raw = request.POST.get("daily_images", "").strip()
            self.act(
                request,
                lambda: team_quota_set(
                    team=team, daily_images=_int(raw, -1) if raw else None, by=request.user
                ),
                _("Quota saved."),
            )
        return redirect("integrations")


def _int(value: Any, default: Any) -> Any:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default
