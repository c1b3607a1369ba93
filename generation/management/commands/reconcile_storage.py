"""Check every stored output object against its row and every row against its object."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.reconcile import reconcile
from generation.storage import StorageUnavailable, get_store


class Command(BaseCommand):
    help = (
        "Report orphan objects, missing objects and SHA-256/size mismatches between the "
        "object store and the output rows. Fixes nothing; exits 1 when anything differs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--deep", action="store_true", help="download and re-hash objects")
        parser.add_argument("--json", action="store_true", help="one JSON object per finding")

    def handle(self, *args: Any, **options: Any) -> None:
        counts: Counter[str] = Counter()
        try:
            for finding in reconcile(get_store(), deep=options["deep"]):
                counts[finding.kind] += 1
                if options["json"]:
                    self.stdout.write(json.dumps(finding.__dict__))
                else:
                    owner = f" (output {finding.output_id})" if finding.output_id else ""
                    self.stdout.write(f"{finding.kind}: {finding.key}{owner}: {finding.detail}")
        except StorageUnavailable as exc:
            raise CommandError(f"the object store is unavailable: {exc}") from exc
        total = sum(counts.values())
        summary = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items())) or "none"
        self.stderr.write(f"reconcile_storage: {total} finding(s): {summary}")
        if total:
            raise SystemExit(1)
