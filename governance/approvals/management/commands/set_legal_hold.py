"""Put a request on legal hold (no purge of its outputs), or release the hold."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.approvals.management.commands._common import get_or_fail, user_named
from governance.approvals.models import GenerationRequest
from governance.approvals.services import request_legal_hold_release, request_legal_hold_set
from governance.errors import GovernanceError


class Command(BaseCommand):
    help = "set_legal_hold REQUEST_ID --reason 'case 12' [--release] [--by ADMINISTRATOR]"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("request_id")
        parser.add_argument("--reason", required=True)
        parser.add_argument("--release", action="store_true")
        parser.add_argument("--by", help="the administrator acting (default: the operator)")

    def handle(self, *args: Any, **options: Any) -> None:
        request = get_or_fail(GenerationRequest.objects.all(), "request", options["request_id"])
        service = request_legal_hold_release if options["release"] else request_legal_hold_set
        try:
            service(request=request, by=user_named(options["by"]), reason=options["reason"])
        except GovernanceError as exc:
            raise CommandError(str(exc)) from exc
        state = "released from" if options["release"] else "put on"
        self.stdout.write(f"request {request.pk} {state} legal hold")
