"""Anchor the audit chain head in write-once storage now (beat does it on a schedule)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from governance.audit.anchoring import anchor_key, anchor_store, audit_anchor
from governance.audit.errors import AnchorStoreError


class Command(BaseCommand):
    help = "Write the audit chain head (sequence, hash, time, MAC) to the anchor store."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            anchor = audit_anchor()
        except AnchorStoreError as exc:
            raise CommandError(str(exc)) from exc
        if anchor is None:
            self.stdout.write("nothing new to anchor")
            return
        where = anchor_store().url(anchor_key(anchor.sequence))
        retained = f" until {anchor.retain_until}" if anchor.retain_until else ""
        self.stdout.write(
            f"anchored sequence {anchor.sequence} ({anchor.hash[:16]}…) at {where}, "
            f"{anchor.protection}{retained}"
        )
