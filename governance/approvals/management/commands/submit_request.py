"""Submit a generation request from a published caption template version."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.approvals.management.commands._common import parse_vars, user_named
from governance.approvals.models import Team
from governance.approvals.services import request_create
from governance.captions.services import TemplateError, template_version_resolve
from governance.errors import GovernanceError


class Command(BaseCommand):
    help = (
        "Submit a request: submit_request shape-on-background --by rita --var colour=red "
        "--var shape=circle --variations 3"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("template", help="name (newest published) or name:number")
        parser.add_argument("--by", required=True, help="the requester")
        parser.add_argument("--var", action="append", metavar="NAME=VALUE")
        parser.add_argument("--variations", type=int, default=1)
        parser.add_argument("--seed", type=int, action="append", help="one per variation")
        parser.add_argument("--team", help="needed when the requester is in several teams")
        parser.add_argument("--language", default="en")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            version = template_version_resolve(options["template"])
            team = Team.objects.filter(name=options["team"]).first() if options["team"] else None
            if options["team"] and team is None:
                raise CommandError(f"no team {options['team']!r}")
            request = request_create(
                requested_by=user_named(options["by"]),
                template_version=version,
                values=parse_vars(options["var"]),
                variations=options["variations"],
                language=options["language"],
                team=team,
                seeds=options["seed"],
            )
        except (GovernanceError, TemplateError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"request {request.pk}: {request.caption!r} on {request.model_version}")
        for job in request.jobs.order_by("variation"):
            self.stdout.write(f"  variation {job.variation}: job {job.pk} seed {job.seed}")
