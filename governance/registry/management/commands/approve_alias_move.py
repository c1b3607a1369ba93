"""Approve (or, with --reject, refuse) a pending move of a protected alias."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.errors import GovernanceError
from governance.registry.management.users import user_named
from governance.registry.models import AliasMoveRequest
from governance.registry.services import RegistryError, alias_move_approve, alias_move_reject


class Command(BaseCommand):
    help = "Approve alias move request ID as a model administrator (not its registrant/requester)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", type=int, help="alias move request number")
        parser.add_argument("--by", required=True, help="username of the model administrator")
        parser.add_argument("--reject", metavar="REASON", help="refuse the move, saying why")

    def handle(self, *args: Any, **options: Any) -> None:
        user = user_named(options["by"])
        move_request = AliasMoveRequest.objects.filter(pk=options["id"]).first()
        if move_request is None:
            raise CommandError(f"no alias move request #{options['id']}")
        try:
            if options["reject"] is not None:
                alias_move_reject(
                    move_request=move_request, rejected_by=user, reason=options["reject"]
                )
                self.stdout.write(f"rejected move request #{move_request.pk}")
                return
            move = alias_move_approve(move_request=move_request, approved_by=user)
        except (RegistryError, GovernanceError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"approved: {move.alias} {move.from_version} -> {move.to_version}")
