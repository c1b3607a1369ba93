"""Send a request back for changes: a child request regenerates with new seeds or values."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.approvals.management.commands._common import get_or_fail, parse_vars, user_named
from governance.approvals.models import GenerationRequest
from governance.approvals.services import request_changes
from governance.errors import GovernanceError


class Command(BaseCommand):
    help = (
        "request_changes REQUEST_ID --by rory --comment 'bluer' [--var colour=blue] [--same-seeds]"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request_id")
        parser.add_argument("--by", required=True, help="the reviewer")
        parser.add_argument("--comment", required=True)
        parser.add_argument("--var", action="append", metavar="NAME=VALUE")
        parser.add_argument("--same-seeds", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        request = get_or_fail(GenerationRequest.objects.all(), "request", options["request_id"])
        try:
            child = request_changes(
                request=request,
                by=user_named(options["by"]),
                comment=options["comment"],
                values=parse_vars(options["var"]) or None,
                new_seeds=not options["same_seeds"],
            )
        except GovernanceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"request {child.pk} regenerates {request.pk}: {child.caption!r}")
