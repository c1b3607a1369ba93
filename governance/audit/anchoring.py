"""Anchor the chain head outside the database, in storage that cannot be rewritten.

An anchor is a small JSON object ``audit-anchors/<sequence>.json`` naming the sequence and
hash of the chain head at that moment, MAC'd with the chain key. On S3 it is written with
Object Lock in COMPLIANCE mode when the bucket supports it (nobody, root included, can
delete or overwrite it before its retention ends), otherwise as a write-once object; in the
embedded default it is a write-once local file. A later rewrite of history then disagrees
with an anchor that its author cannot touch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from governance.audit.actions import AuditAction
from governance.audit.chain import ChainHasher, format_time, key_fingerprint
from governance.audit.errors import AnchorStoreError
from governance.audit.models import AuditEvent
from governance.audit.services import Actor, audit_append

ANCHOR_PREFIX = "audit-anchors/"
ANCHOR_FORMAT = 1

# How the anchor object is protected, as recorded in the anchor itself.
PROTECTION_OBJECT_LOCK = "s3-object-lock-compliance"
PROTECTION_WRITE_ONCE = "s3-write-once"
PROTECTION_LOCAL = "local-write-once"


class AnchorExists(AnchorStoreError):
    """An anchor for this sequence was already written (by a concurrent anchoring run)."""


def anchor_key(sequence: int) -> str:
    """Return the object key of the anchor of ``sequence``, zero-padded so keys sort by it."""
    return f"{ANCHOR_PREFIX}{sequence:020d}.json"


@dataclass(frozen=True)
class Anchor:
    """An anchor as written: the head it attests, when, how it is protected, its MAC."""

    sequence: int
    hash: str
    event_occurred_at: str
    anchored_at: str
    protection: str
    retain_until: str | None
    key_fingerprint: str
    mac: str = ""

    def signed_fields(self) -> dict[str, Any]:
        return {
            "format": ANCHOR_FORMAT,
            "sequence": self.sequence,
            "hash": self.hash,
            "event_occurred_at": self.event_occurred_at,
            "anchored_at": self.anchored_at,
            "protection": self.protection,
            "retain_until": self.retain_until,
            "key_fingerprint": self.key_fingerprint,
        }

    def expected_mac(self) -> str:
        """Return the MAC the chain key gives this anchor's fields."""
        message = json.dumps(self.signed_fields(), sort_keys=True, separators=(",", ":"))
        return ChainHasher().digest(message.encode())

    def to_bytes(self) -> bytes:
        body = {**self.signed_fields(), "mac": self.mac}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Anchor:
        """Parse an anchor object; raise ``ValueError`` if it is not one."""
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("format") != ANCHOR_FORMAT:
            raise ValueError("not an audit anchor of format 1")
        return cls(
            sequence=int(body["sequence"]),
            hash=str(body["hash"]),
            event_occurred_at=str(body["event_occurred_at"]),
            anchored_at=str(body["anchored_at"]),
            protection=str(body["protection"]),
            retain_until=body["retain_until"],
            key_fingerprint=str(body["key_fingerprint"]),
            mac=str(body["mac"]),
        )


class AnchorStore(Protocol):
    def url(self, key: str) -> str: ...

    def protection(self) -> str: ...

    def put(self, key: str, data: bytes, *, retain_until: datetime | None) -> None: ...

    def read(self, key: str) -> tuple[bytes | None, int]: ...

    def keys_after(self, start_after: str, limit: int) -> list[str]: ...


class LocalAnchorStore:
    """Write-once files: kept from accidents, not from someone who owns the disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def protection(self) -> str:
        return PROTECTION_LOCAL

    def _path(self, key: str) -> Path:
        return self.root / key.removeprefix(ANCHOR_PREFIX)

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def put(self, key: str, data: bytes, *, retain_until: datetime | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self._path(key), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            raise AnchorExists(f"{key} exists") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def read(self, key: str) -> tuple[bytes | None, int]:
        """Return the anchor's bytes (None if absent) and how often it was written over (0)."""
        try:
            return self._path(key).read_bytes(), 0
        except FileNotFoundError:
            return None, 0

    def keys_after(self, start_after: str, limit: int) -> list[str]:
        if not self.root.is_dir():
            return []
        keys = sorted(ANCHOR_PREFIX + path.name for path in self.root.glob("*.json"))
        return [key for key in keys if key > start_after][:limit]


class S3AnchorStore:
    """A bucket of its own, created with Object Lock on first use if it does not exist."""

    def __init__(self, bucket: str) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.S3_ENDPOINT_URL,
            region_name=settings.S3_REGION,
            aws_access_key_id=settings.S3_ACCESS_KEY_ID,
            aws_secret_access_key=settings.S3_SECRET_ACCESS_KEY,
            config=Config(
                connect_timeout=settings.S3_CONNECT_TIMEOUT,
                read_timeout=settings.S3_READ_TIMEOUT,
                retries={"max_attempts": settings.S3_MAX_ATTEMPTS, "mode": "standard"},
                signature_version="s3v4",
            ),
        )
        self._locked: bool | None = None

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)  # type: ignore[no-any-return]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise AnchorExists(f"{kwargs.get('Key')} exists") from None
            raise AnchorStoreError(
                f"S3 {method} on {self.bucket} refused: {code} {error.get('Message', '')}".strip()
            ) from exc
        except BotoCoreError as exc:
            raise AnchorStoreError(f"S3 {method} on {self.bucket} failed: {exc}") from exc

    def _ensure_bucket(self) -> bool:
        """Create the bucket with Object Lock if missing; return whether Object Lock is on."""
        from botocore.exceptions import ClientError

        if self._locked is not None:
            return self._locked
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            create: dict[str, Any] = {"ObjectLockEnabledForBucket": True}
            if settings.S3_REGION != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": settings.S3_REGION}
            try:
                self._call("create_bucket", **create)
            except AnchorStoreError:
                # A store without Object Lock: a plain bucket, write-once objects.
                create.pop("ObjectLockEnabledForBucket")
                self._call("create_bucket", **create)
        try:
            config = self._call("get_object_lock_configuration")
            enabled = config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
            self._locked = enabled == "Enabled"
        except AnchorStoreError:
            self._locked = False
        return self._locked

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def protection(self) -> str:
        return PROTECTION_OBJECT_LOCK if self._ensure_bucket() else PROTECTION_WRITE_ONCE

    def put(self, key: str, data: bytes, *, retain_until: datetime | None) -> None:
        extra: dict[str, Any] = {}
        if retain_until is not None:
            extra = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until}
        self._call(
            "put_object",
            Key=key,
            Body=data,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
            IfNoneMatch="*",
            **extra,
        )

    def read(self, key: str) -> tuple[bytes | None, int]:
        """Return the first version ever written (None if absent) and how many came after.

        Object Lock keeps the first version; anyone holding credentials can still stack a
        newer version or a delete marker on top, so the anchor is read from the bottom.
        """
        listing = self._call("list_object_versions", Prefix=key)
        versions = [item for item in listing.get("Versions", []) if item["Key"] == key]
        markers = [item for item in listing.get("DeleteMarkers", []) if item["Key"] == key]
        if not versions:
            return None, len(markers)
        # S3 lists versions newest first.
        first = versions[-1]
        extra: dict[str, Any] = {}
        if first.get("VersionId") not in (None, "null"):
            extra["VersionId"] = first["VersionId"]
        response = self._call("get_object", Key=key, **extra)
        return response["Body"].read(), len(versions) - 1 + len(markers)

    def keys_after(self, start_after: str, limit: int) -> list[str]:
        keys: list[str] = []
        for page in self._pages(start_after):
            keys.extend(item["Key"] for item in page.get("Contents", []))
            if len(keys) >= limit:
                break
        return keys[:limit]

    def _pages(self, start_after: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Prefix": ANCHOR_PREFIX, "StartAfter": start_after}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._call("list_objects_v2", **kwargs)
            except AnchorStoreError as exc:
                if "NoSuchBucket" in str(exc):
                    return
                raise
            yield page
            token = page.get("NextContinuationToken")
            if not token:
                return


@lru_cache(maxsize=4)
def _store_for(backend: str, where: str) -> AnchorStore:
    return S3AnchorStore(where) if backend == "s3" else LocalAnchorStore(Path(where))


def anchor_store() -> AnchorStore:
    """Return the configured anchor store (one per process and configuration)."""
    if settings.AUDIT_ANCHOR_BACKEND == "s3":
        return _store_for("s3", settings.AUDIT_ANCHOR_BUCKET)
    return _store_for("local", str(settings.AUDIT_ANCHOR_ROOT))


def audit_anchor(*, actor: Actor = None) -> Anchor | None:
    """Write the chain head to the anchor store and record ``audit.anchored``.

    Returns the anchor, or ``None`` when there is nothing new to anchor (an empty chain,
    a head that is itself the previous anchoring, or a concurrent run that got there first).
    """
    # 1. The head: the latest committed event (events are immutable, so no lock is needed).
    head = (
        AuditEvent.objects.order_by("-sequence")
        .values_list("sequence", "hash", "occurred_at", "action", "payload_json")
        .first()
    )
    if head is None:
        return None
    sequence, head_hash, occurred_at, action, payload_json = head
    if action == AuditAction.AUDIT_ANCHORED and json.loads(payload_json).get("sequence") == (
        sequence - 1
    ):
        return None
    # 2. Write the anchor, under Object Lock where the store has it.
    store = anchor_store()
    protection = store.protection()
    now = timezone.now()
    retain_until = None
    if protection == PROTECTION_OBJECT_LOCK:
        retain_until = now + timedelta(days=settings.AUDIT_ANCHOR_RETENTION_DAYS)
    anchor = Anchor(
        sequence=sequence,
        hash=head_hash,
        event_occurred_at=format_time(occurred_at),
        anchored_at=format_time(now),
        protection=protection,
        retain_until=format_time(retain_until) if retain_until else None,
        key_fingerprint=key_fingerprint(),
    )
    anchor = Anchor(**{**anchor.__dict__, "mac": anchor.expected_mac()})
    key = anchor_key(sequence)
    try:
        store.put(key, anchor.to_bytes(), retain_until=retain_until)
    except AnchorExists:
        return None
    # 3. The anchoring is itself an event of the chain.
    with transaction.atomic():
        audit_append(
            actor=actor,
            action=AuditAction.AUDIT_ANCHORED,
            target_type="audit_chain",
            target_id=str(sequence),
            payload={
                "sequence": sequence,
                "hash": head_hash,
                "object": store.url(key),
                "protection": protection,
                "retain_until": anchor.retain_until,
            },
        )
    return anchor
