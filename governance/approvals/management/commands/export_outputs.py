"""Search outputs and stream the result as CSV or JSON Lines to standard output."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.approvals.management.commands._common import user_named
from governance.approvals.search import output_export, output_search
from governance.errors import GovernanceError


def _moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r} is not an ISO date or time") from None


class Command(BaseCommand):
    help = "export_outputs --by audrey --format jsonl [--person rita] [--template shapes:1] ..."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--by", required=True, help="the auditor exporting (visibility)")
        parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
        parser.add_argument("--person")
        parser.add_argument("--template")
        parser.add_argument("--model-version")
        parser.add_argument("--review-status")
        parser.add_argument("--since", type=_moment)
        parser.add_argument("--until", type=_moment)
        parser.add_argument("--caption")

    def handle(self, *args: Any, **options: Any) -> None:
        viewer = user_named(options["by"])
        filters = {
            name: options[name]
            for name in (
                "person", "template", "model_version", "review_status", "since", "until",
                "caption",
            )
            if options[name] is not None
        }  # fmt: skip
        try:
            outputs = output_search(viewer=viewer, **filters)
            for chunk in output_export(
                outputs=outputs, fmt=options["format"], actor=viewer, filters=filters
            ):
                self.stdout.write(chunk, ending="")
        except GovernanceError as exc:
            raise CommandError(str(exc)) from exc
