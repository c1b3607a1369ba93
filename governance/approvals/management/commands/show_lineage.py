"""Print the lineage of one output as JSON: request to review, with who and when."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from generation.models import Output
from governance.approvals.lineage import output_lineage
from governance.approvals.management.commands._common import get_or_fail


class Command(BaseCommand):
    help = "show_lineage OUTPUT_ID"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output_id")

    def handle(self, *args: Any, **options: Any) -> None:
        output = get_or_fail(Output.objects.all(), "output", options["output_id"])
        self.stdout.write(json.dumps(output_lineage(output=output), indent=2, ensure_ascii=False))
