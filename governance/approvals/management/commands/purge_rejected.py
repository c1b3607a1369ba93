"""Run the retention purge once (Celery beat runs it every RETENTION_PURGE_INTERVAL)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from governance.approvals.retention import retention_purge


class Command(BaseCommand):
    help = "Purge the images of rejected outputs past retention (legal holds excepted)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="default: RETENTION_REJECTED_DAYS")
        parser.add_argument("--limit", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        report = retention_purge(older_than_days=options["days"], limit=options["limit"])
        self.stdout.write(
            f"rejected before {report.cutoff.isoformat()}: purged {len(report.purged)}, "
            f"held {len(report.held)}, objects deleted {report.objects_deleted}, "
            f"delete failures {len(report.delete_failures)}"
        )
        for output_id in report.purged:
            self.stdout.write(f"  purged {output_id}")
