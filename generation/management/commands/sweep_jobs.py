"""Run the job sweeper once (the Celery beat schedule runs it periodically)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from generation.services import jobs_sweep


class Command(BaseCommand):
    help = "Re-dispatch queued jobs nobody took and recover jobs whose worker died."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = jobs_sweep()
        self.stdout.write(", ".join(f"{key}: {value}" for key, value in counts.items()))
