"""Recompute the whole audit chain and compare it with its head and latest anchors."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.audit.verification import audit_verify, audit_verify_recorded


class Command(BaseCommand):
    help = "Verify the audit hash chain; exit 1 naming the first broken link if there is one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchors", type=int, default=10, help="how many recent anchors to check (0: none)"
        )
        parser.add_argument("--chunk-size", type=int, default=5000, help="rows per fetch")
        parser.add_argument(
            "--no-record",
            action="store_true",
            help="do not append the outcome to the chain as an audit.verified event "
            "(for a read-only database)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["anchors"] < 0 or options["chunk_size"] < 1:
            raise CommandError("--anchors must be >= 0 and --chunk-size >= 1")
        if options["no_record"]:
            result = audit_verify(anchors=options["anchors"], chunk_size=options["chunk_size"])
        else:
            result, _ = audit_verify_recorded(
                actor=None, anchors=options["anchors"], chunk_size=options["chunk_size"]
            )
        rate = result.checked / result.seconds if result.seconds else 0.0
        self.stdout.write(
            f"checked {result.checked} events (last sequence {result.last_sequence}) and "
            f"{result.anchors_checked} anchors in {result.seconds:.2f}s ({rate:,.0f} events/s)"
        )
        if result.ok:
            self.stdout.write(self.style.SUCCESS("audit chain intact"))
            return
        for problem in result.problems:
            self.stderr.write(f"  {problem}")
        if result.unlisted_problems:
            self.stderr.write(f"  … and {result.unlisted_problems} more")
        raise CommandError(f"audit chain broken: first broken link at {result.first_broken_link}")
