"""Grant or revoke a governance role (the operator at the shell acts as the system)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.errors import GovernanceError
from governance.registry.management.users import user_named
from governance.roles import Role, role_grant, role_revoke


class Command(BaseCommand):
    help = "Give USER the ROLE (requester, reviewer, auditor, model_admin, administrator)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=[role.value for role in Role])
        parser.add_argument("--revoke", action="store_true", help="take the role away")

    def handle(self, *args: Any, **options: Any) -> None:
        user = user_named(options["username"])
        role = options["role"]
        try:
            if options["revoke"]:
                changed = role_revoke(user=user, role=role, revoked_by=None)
                verb = "revoked" if changed else "did not hold"
            else:
                changed = role_grant(user=user, role=role, granted_by=None)
                verb = "granted" if changed else "already held"
        except GovernanceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{user.get_username()}: {role} {verb}")
