"""Move an alias: directly for an unprotected alias, as a request for production."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.errors import GovernanceError
from governance.registry.management.users import user_named
from governance.registry.models import PROTECTED_ALIASES
from governance.registry.services import RegistryError, alias_move, alias_move_request


class Command(BaseCommand):
    help = "Point NAME@ALIAS at VERSION (production: file a request a model admin approves)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="registered model name")
        parser.add_argument("alias", help="alias, e.g. candidate or production")
        parser.add_argument("version", type=int, help="version number to point at")
        parser.add_argument("--by", required=True, help="username of the person moving it")
        parser.add_argument("--reason", required=True, help="why (kept in the alias history)")

    def handle(self, *args: Any, **options: Any) -> None:
        user = user_named(options["by"])
        name, alias, number = options["name"], options["alias"], options["version"]
        try:
            if alias in PROTECTED_ALIASES:
                move_request = alias_move_request(
                    model_name=name,
                    alias=alias,
                    version=number,
                    requested_by=user,
                    reason=options["reason"],
                )
                self.stdout.write(
                    f"move request #{move_request.pk}: {name}@{alias} -> {name}:{number} waits "
                    f"for a model administrator: manage.py approve_alias_move {move_request.pk} "
                    "--by USER"
                )
                return
            alias_move(
                model_name=name,
                alias=alias,
                version=number,
                moved_by=user,
                reason=options["reason"],
            )
        except (RegistryError, GovernanceError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{name}@{alias} -> {name}:{number}")
