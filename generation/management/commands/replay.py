"""Regenerate an output from its record and report whether the pixels are identical."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.models import Output, ReplayOutcome
from generation.replay import output_replay


class Command(BaseCommand):
    help = "replay OUTPUT_ID: regenerate and compare pixels (exit 1 when they differ)"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output_id")
        parser.add_argument("--by", help="username recorded as having asked for the replay")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            output = Output.objects.filter(pk=options["output_id"]).first()
        except (ValueError, ValidationError):
            output = None
        if output is None:
            raise CommandError(f"no output {options['output_id']!r}")
        by = None
        if options["by"]:
            by = get_user_model().objects.filter(username=options["by"]).first()
            if by is None:
                raise CommandError(f"no user named {options['by']!r}")
        replay = output_replay(output=output, triggered_by=by)
        self.stdout.write(f"output {output.pk} on {output.model_version}, seed {output.seed}")
        if replay.outcome == ReplayOutcome.IDENTICAL:
            self.stdout.write("identical: yes (every pixel matches the stored image)")
        elif replay.outcome == ReplayOutcome.DRIFTED:
            self.stdout.write(f"identical: no ({replay.detail})")
        else:
            self.stdout.write(f"identical: unknown ({replay.detail})")
        if replay.outcome != ReplayOutcome.IDENTICAL:
            raise SystemExit(1)
