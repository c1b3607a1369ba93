"""Register a model version from a checkpoint directory, an S3 prefix, or one URI per file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from governance.errors import GovernanceError
from governance.registry.models import PROTECTED_ALIASES
from governance.registry.services import (
    RegistryError,
    WeightSource,
    alias_move,
    alias_move_request,
    model_version_register,
    sources_from_location,
)


class Command(BaseCommand):
    help = "Register a model version: hash its weight files and record config and model card."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="registered model name, e.g. demo")
        parser.add_argument(
            "--dir", help="checkpoint directory or s3://bucket/prefix (config.json + weights)"
        )
        parser.add_argument("--vqvae", help="VQVAE weights URI (path, file:// or s3://)")
        parser.add_argument("--transformer", help="transformer weights URI")
        parser.add_argument("--text-encoder", help="text tower weights URI")
        parser.add_argument(
            "--config", type=Path, help="engine config JSON (default: beside weights)"
        )
        parser.add_argument(
            "--model-card", type=Path, help="model card JSON (default: model_card.json beside)"
        )
        parser.add_argument("--sampling", type=Path, help="sampling defaults JSON")
        parser.add_argument(
            "--sha256",
            action="append",
            default=[],
            metavar="ROLE=HEX",
            help="refuse the registration unless this role's file has this SHA-256",
        )
        parser.add_argument("--by", help="username of the registrant")
        parser.add_argument(
            "--alias",
            help="also point this alias at the new version (production: request the move)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dir"]:
            try:
                sources = sources_from_location(options["dir"])
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
        expected = {}
        for item in options["sha256"]:
            role, _, digest = item.partition("=")
            if not digest:
                raise CommandError(f"--sha256 wants ROLE=HEX, got {item!r}")
            expected[role.strip().replace("-", "_")] = digest.strip().lower()
        config = _read_json(options["config"]) if options["config"] else None
        card = _read_json(options["model_card"]) if options["model_card"] else None
        sampling = _read_json(options["sampling"]) if options["sampling"] else None
        alias = options["alias"]
        lines: list[str] = []
        try:
            # One transaction: a refused alias step leaves no half-done registration behind.
            with transaction.atomic():
                version = model_version_register(
                    model_name=options["name"],
                    sources=sources,
                    registered_by=user,
                    engine_config=config,
                    model_card=card,
                    sampling_defaults=sampling,
                    expected_sha256=expected or None,
                )
                lines.append(f"registered {version}")
                lines += [
                    f"  {weight.role:<13} {weight.sha256}  {weight.uri}"
                    for weight in version.weights.all()
                ]
                # A person asks for a protected move; without --by the system may only place
                # a protected alias that does not exist yet (a fresh installation).
                if alias and alias in PROTECTED_ALIASES and user is not None:
                    move_request = alias_move_request(
                        model_name=options["name"],
                        alias=alias,
                        version=version.version,
                        requested_by=user,
                        reason="requested at registration",
                    )
                    lines.append(
                        f"  requested {options['name']}@{alias} -> {version} as move request "
                        f"#{move_request.pk}; a model administrator approves it with "
                        f"manage.py approve_alias_move {move_request.pk} --by USER"
                    )
                elif alias:
                    alias_move(
                        model_name=options["name"],
                        alias=alias,
                        version=version.version,
                        moved_by=user,
                        reason="set at registration",
                    )
                    lines.append(f"  {options['name']}@{alias} -> {version}")
        except (RegistryError, GovernanceError) as exc:
            raise CommandError(str(exc)) from exc
        for line in lines:
            self.stdout.write(line)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path} is not valid JSON: {exc}") from exc
