"""Content-addressed object storage for generated images: S3 (boto3) or local files.

Every object is written once under a key derived from its SHA-256, the digest is checked
by the store itself (S3 ``ChecksumSHA256``), and an existing key is never overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from django.conf import settings


class StorageError(Exception):
    """The store refused an operation for a reason that retrying will not fix."""


class StorageUnavailable(StorageError):
    """The store could not be reached or answered with a server error; retrying may help."""


class ObjectMissing(StorageError):
    """No object exists under the key."""


@dataclass(frozen=True)
class StoredObject:
    """Where an object lives and what the store says about it."""

    key: str
    sha256: str
    size: int


def sha256_hex(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def content_key(sha256: str, *, prefix: str = "outputs", suffix: str = ".png") -> str:
    """Return the content-addressed key for a digest, fanned out by its first two digits."""
    return f"{prefix}/{sha256[:2]}/{sha256}{suffix}"


class ObjectStore(Protocol):
    """What the platform needs from an object store."""

    def put(self, key: str, data: bytes, sha256: str, content_type: str) -> StoredObject: ...

    def get(self, key: str) -> bytes: ...

    def head(self, key: str) -> StoredObject: ...

    def delete(self, key: str) -> None: ...

    def iter_keys(self, prefix: str) -> Iterator[str]: ...

    def download_url(self, key: str, filename: str) -> str | None: ...


class S3Store:
    """An S3 bucket through boto3, with store-side SHA-256 checks and no overwrites."""

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

    def _call(self, method: str, **kwargs: object) -> dict[str, object]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)  # type: ignore[no-any-return]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            http = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(str(kwargs.get("Key", ""))) from exc
            if code == "PreconditionFailed":
                raise
            if http >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                raise StorageUnavailable(f"S3 {method} failed: {code or http}") from exc
            raise StorageError(f"S3 {method} refused: {code} {error.get('Message', '')}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"S3 {method} failed: {type(exc).__name__}") from exc

    def put(self, key: str, data: bytes, sha256: str, content_type: str) -> StoredObject:
        """Upload once; the store verifies the SHA-256 and refuses to replace an existing key."""
        from botocore.exceptions import ClientError

        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        try:
            self._call(
                "put_object",
                Key=key,
                Body=data,
                ChecksumSHA256=checksum,
                ContentType=content_type,
                IfNoneMatch="*",
            )
        except ClientError:
            # Content-addressed: the key exists already, which is fine if it holds these bytes.
            existing = self.head(key)
            if existing.sha256 != sha256 or existing.size != len(data):
                raise StorageError(f"{key} exists with different content") from None
            return existing
        return StoredObject(key=key, sha256=sha256, size=len(data))

    def get(self, key: str) -> bytes:
        response = self._call("get_object", Key=key)
        return response["Body"].read()  # type: ignore[attr-defined,no-any-return]

    def head(self, key: str) -> StoredObject:
        response = self._call("head_object", Key=key, ChecksumMode="ENABLED")
        checksum = response.get("ChecksumSHA256")
        digest = base64.b64decode(str(checksum)).hex() if checksum else ""
        return StoredObject(key=key, sha256=digest, size=int(response["ContentLength"]))  # type: ignore[call-overload]

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=key)

    def iter_keys(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            kwargs: dict[str, object] = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", **kwargs)
            for item in page.get("Contents", []) or []:  # type: ignore[attr-defined]
                yield item["Key"]
            if not page.get("IsTruncated"):
                return
            token = str(page["NextContinuationToken"])

    def download_url(self, key: str, filename: str) -> str | None:
        return self.client.generate_presigned_url(  # type: ignore[no-any-return]
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=settings.S3_PRESIGN_SECONDS,
        )


class LocalStore:
    """Content-addressed files under a root folder; writes are atomic and never overwrite."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes, sha256: str, content_type: str) -> StoredObject:
        if sha256_hex(data) != sha256:
            raise StorageError(f"checksum mismatch for {key}")
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() fails if the name exists, so a concurrent writer never replaces an object.
            os.link(handle.name, path)
        except FileExistsError:
            existing = self.head(key)
            if existing.sha256 != sha256:
                raise StorageError(f"{key} exists with different content") from None
        except OSError as exc:
            raise StorageUnavailable(f"local store write failed: {exc.strerror}") from exc
        finally:
            os.unlink(handle.name)
        return StoredObject(key=key, sha256=sha256, size=len(data))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def head(self, key: str) -> StoredObject:
        data = self.get(key)
        return StoredObject(key=key, sha256=sha256_hex(data), size=len(data))

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def iter_keys(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file():
                yield path.relative_to(self.root).as_posix()

    def download_url(self, key: str, filename: str) -> str | None:
        return None


@lru_cache(maxsize=1)
def get_store() -> ObjectStore:
    """Return the configured store (cached for the process)."""
    if settings.OBJECT_STORE_BACKEND == "s3":
        return S3Store(settings.S3_BUCKET)
    return LocalStore(settings.LOCAL_OBJECT_ROOT)
