"""Load the demo caption templates and publish them through the normal approval path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from governance.captions.models import Template, TemplateStatus
from governance.captions.report import report_lines
from governance.captions.services import (
    template_create,
    template_version_create,
    template_version_publish,
    template_version_submit,
)
from governance.errors import GovernanceError
from governance.roles import Role, role_grant

DEMO_TEMPLATES = Path(__file__).resolve().parents[2] / "demo_templates.json"
# Two distinct system accounts, so the demo templates pass separation of duties honestly.
AUTHOR, REVIEWER = "demo-template-author", "demo-template-reviewer"


class Command(BaseCommand):
    help = "Create, lint, submit and publish the demo caption templates (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--model", default=None, help="registered model name (default: the default model)"
        )
        parser.add_argument("--quiet-report", action="store_true", help="omit the lint reports")

    def handle(self, *args: Any, **options: Any) -> None:
        model = options["model"] or settings.GENERATION_DEFAULT_MODEL
        specs = json.loads(DEMO_TEMPLATES.read_text())
        author, reviewer = _system_user(AUTHOR), _system_user(REVIEWER)
        role_grant(user=reviewer, role=Role.REVIEWER, granted_by=None)
        for spec in specs:
            existing = Template.objects.filter(name=spec["name"]).first()
            if existing and existing.versions.filter(status=TemplateStatus.PUBLISHED).exists():
                self.stdout.write(f"{spec['name']}: already published")
                continue
            try:
                with transaction.atomic():
                    template = existing or template_create(
                        name=spec["name"],
                        title=spec["title"],
                        description=spec["description"],
                        model_name=model,
                        created_by=author,
                    )
                    version = template_version_create(
                        template=template,
                        created_by=author,
                        pattern=spec["pattern"],
                        variables=spec["variables"],
                        checklist=spec["checklist"],
                        examples=spec["examples"],
                    )
                    version = template_version_submit(version=version, by=author)
                    version = template_version_publish(version=version, approved_by=reviewer)
            except (GovernanceError, ValueError) as exc:
                raise CommandError(f"{spec['name']}: {exc}") from exc
            self.stdout.write(self.style.SUCCESS(f"{version} published"))
            if not options["quiet_report"]:
                for line in report_lines(version.lint_report):
                    self.stdout.write(f"  {line}")


def _system_user(username: str) -> AbstractBaseUser:
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user
