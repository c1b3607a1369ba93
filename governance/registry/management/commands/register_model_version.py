"""Register a model version from a checkpoint directory or from one URI per weight file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.registry.services import (
    RegistryError,
    WeightSource,
    alias_move,
    model_version_register,
    sources_from_directory,
)


class Command(BaseCommand):
    help = "Register a model version: hash its weight files and record config and model card."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="registered model name, e.g. demo")
        parser.add_argument("--dir", type=Path, help="checkpoint directory (config.json + weights)")
        parser.add_argument("--vqvae", help="VQVAE weights URI (path, file:// or s3://)")
        parser.add_argument("--transformer", help="transformer weights URI")
        parser.add_argument("--text-encoder", help="text tower weights URI")
        parser.add_argument(
            "--config", type=Path, help="engine config JSON (default: beside weights)"
        )
        parser.add_argument("--model-card", type=Path, help="model card JSON")
        parser.add_argument("--by", help="username of the registrant")
        parser.add_argument("--alias", help="also point this alias at the new version")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dir"]:
            try:
                sources = sources_from_directory(options["dir"])
            except RegistryError as exc:
                raise CommandError(str(exc)) from exc
        else:
            uris = {
                "vqvae": options["vqvae"],
                "transformer": options["transformer"],
                "text_encoder": options["text_encoder"],
            }
            missing = [role for role, uri in uris.items() if not uri]
            if missing:
                raise CommandError(f"give --dir, or a URI for each of: {', '.join(missing)}")
            sources = [WeightSource(role=role, uri=uri) for role, uri in uris.items()]
        user = None
        if options["by"]:
            user = get_user_model().objects.filter(username=options["by"]).first()
            if user is None:
                raise CommandError(f"no user {options['by']!r}")
        try:
            config = _read_json(options["config"]) if options["config"] else None
            card = _read_json(options["model_card"]) if options["model_card"] else None
            if card is None and options["dir"] and (options["dir"] / "model_card.json").exists():
                card = _read_json(options["dir"] / "model_card.json")
            version = model_version_register(
                model_name=options["name"],
                sources=sources,
                registered_by=user,
                engine_config=config,
                model_card=card,
            )
            self.stdout.write(f"registered {version}")
            for weight in version.weights.all():
                self.stdout.write(f"  {weight.role:<13} {weight.sha256}  {weight.uri}")
            if options["alias"]:
                alias_move(
                    model_name=options["name"],
                    alias=options["alias"],
                    version=version.version,
                    moved_by=user,
                    reason="set at registration",
                )
                self.stdout.write(f"  {options['name']}@{options['alias']} -> {version}")
        except RegistryError as exc:
            raise CommandError(str(exc)) from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from exc
