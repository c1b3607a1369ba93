"""Print every move of an alias: when, who, from, to, why, and who asked for it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.registry.services import alias_history


class Command(BaseCommand):
    help = "Show the history of NAME@ALIAS, newest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("reference", help="NAME@ALIAS, e.g. demo@production")

    def handle(self, *args: Any, **options: Any) -> None:
        name, _, alias = options["reference"].partition("@")
        if not alias:
            raise CommandError("give NAME@ALIAS, e.g. demo@production")
        moves = alias_history(model_name=name, alias=alias)
        if not moves:
            raise CommandError(f"{name}@{alias} has never been set")
        for move in moves:
            who = move.moved_by.get_username() if move.moved_by else "system"
            asked = f" (requested by {move.request.requested_by})" if move.request else ""
            self.stdout.write(
                f"{move.moved_at:%Y-%m-%d %H:%M:%S} {who}{asked}: "
                f"{move.from_version or '(unset)'} -> {move.to_version}  because: {move.reason}"
            )
