"""Approve or reject one output from the command line, through the review service."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.models import Output
from governance.approvals.management.commands._common import get_or_fail, user_named
from governance.approvals.services import review_decide
from governance.errors import GovernanceError


class Command(BaseCommand):
    help = (
        "review_output OUTPUT_ID --by rory --approve --tick 'item' [--flagged-reason R] | "
        "--reject 'why'"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("output_id")
        parser.add_argument("--by", required=True, help="the reviewer")
        decision = parser.add_mutually_exclusive_group(required=True)
        decision.add_argument("--approve", action="store_true")
        decision.add_argument("--reject", metavar="COMMENT")
        parser.add_argument("--tick", action="append", default=[], metavar="CHECKLIST_ITEM")
        parser.add_argument("--flagged-reason", default="")
        parser.add_argument("--comment", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        output = get_or_fail(Output.objects.all(), "output", options["output_id"])
        reviewer = user_named(options["by"])
        try:
            decision = review_decide(
                output=output,
                reviewer=reviewer,
                decision="approved" if options["approve"] else "rejected",
                checklist=options["tick"],
                comment=options["reject"] or options["comment"],
                flagged_reason=options["flagged_reason"],
            )
        except GovernanceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"output {output.pk} {decision.decision} by {reviewer}")
