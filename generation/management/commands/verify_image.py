"""Say whether an image file came from this platform, unchanged, and its review status now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.provenance import image_verify


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


class Command(BaseCommand):
    help = "verify_image FILE: origin, integrity, output id, review status (exit 1 if not genuine)"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        found = image_verify(data=data)
        record = found.file.record or {}
        status = found.review_status or "unknown (no such output here)"
        if found.purged:
            status += " (image purged by retention)"
        lines = [
            f"file:                {path}",
            f"from this platform:  {_yes(found.from_platform)}",
            f"unchanged:           {_yes(found.unchanged)}",
            f"output:              {found.output_id or '-'}",
            f"review status:       {status if found.output_id else '-'}",
            f"model version:       {record.get('model_version', '-')}",
            f"template version:    {record.get('template_version') or '-'}",
            f"AI-generated marker: {_yes(found.file.ai_marker)} (IPTC trainedAlgorithmicMedia)",
            f"same bytes as store: {_yes(found.byte_identical)}",
            f"C2PA manifest:       {found.content_credentials.describe()}",
            f"detail:              {found.detail}",
        ]
        self.stdout.write("\n".join(lines))
        if not (found.from_platform and found.unchanged):
            raise SystemExit(1)
