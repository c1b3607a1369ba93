"""Write a private CA and a C2PA signing certificate, and print the settings that use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from generation.content_credentials import c2pa_certificate_create


class Command(BaseCommand):
    help = "make_c2pa_certificate DIR: ES256 chain and key for C2PA manifests (private CA)"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--days", type=int, default=825)

    def handle(self, *args: Any, **options: Any) -> None:
        chain, key = c2pa_certificate_create(options["directory"], days=options["days"])
        self.stdout.write(f"PROVENANCE_C2PA_CERT={chain.resolve()}")
        self.stdout.write(f"PROVENANCE_C2PA_KEY={key.resolve()}")
