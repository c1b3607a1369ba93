"""Create a team, or add and remove its members."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.approvals.management.commands._common import user_named
from governance.approvals.models import Team
from governance.approvals.services import team_create, team_member_add, team_member_remove
from governance.errors import GovernanceError


class Command(BaseCommand):
    help = "Create a team (if new) and add or remove members: create_team brand 'Brand' --add rita"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("title", nargs="?", default="")
        parser.add_argument("--add", nargs="*", default=[], metavar="USERNAME")
        parser.add_argument("--remove", nargs="*", default=[], metavar="USERNAME")
        parser.add_argument("--by", help="the administrator acting (default: the operator)")

    def handle(self, *args: Any, **options: Any) -> None:
        by = user_named(options["by"])
        try:
            team = Team.objects.filter(name=options["name"]).first()
            if team is None:
                team = team_create(
                    name=options["name"], title=options["title"] or options["name"], created_by=by
                )
                self.stdout.write(f"created team {team.name}")
            for username in options["add"]:
                added = team_member_add(team=team, user=user_named(username), added_by=by)
                self.stdout.write(f"{username} {'added to' if added else 'already in'} {team}")
            for username in options["remove"]:
                gone = team_member_remove(team=team, user=user_named(username), removed_by=by)
                self.stdout.write(f"{username} {'removed from' if gone else 'was not in'} {team}")
        except GovernanceError as exc:
            raise CommandError(str(exc)) from exc
