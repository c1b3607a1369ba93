"""Print a model version's card, weights, engine config summary and aliases."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.registry.models import MODEL_CARD_FIELDS
from governance.registry.services import RegistryError, model_version_resolve


class Command(BaseCommand):
    help = "Show the model card of NAME:VERSION (or NAME@ALIAS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("reference", help="e.g. demo:1 or demo@production")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            version = model_version_resolve(options["reference"])
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc
        registrant = version.registered_by.get_username() if version.registered_by else "system"
        self.stdout.write(
            f"{version}  registered {version.created_at:%Y-%m-%d %H:%M} UTC by {registrant}"
        )
        aliases = ", ".join(f"@{alias.name}" for alias in version.aliases.all()) or "none"
        self.stdout.write(f"aliases: {aliases}")
        self.stdout.write("model card:")
        for key, meaning in MODEL_CARD_FIELDS.items():
            value = version.model_card.get(key)
            shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
            self.stdout.write(f"  {key}: {shown if value is not None else '(not stated)'}")
            self.stdout.write(f"      ({meaning})")
        self.stdout.write("weights:")
        for weight in version.weights.all():
            self.stdout.write(
                f"  {weight.role:<13} {weight.sha256}  {weight.size_bytes} B  {weight.uri}"
            )
        self.stdout.write(f"sampling defaults: {json.dumps(version.sampling_defaults)}")
        self.stdout.write(f"engine config: {json.dumps(version.engine_config, sort_keys=True)}")
