"""Compare the object store with the output rows, both ways, and report every difference.

Nothing is repaired: an orphan object or a missing one is evidence for an operator to
look at, and deleting or re-uploading it silently would destroy that evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from generation.models import Output
from generation.storage import ObjectMissing, ObjectStore, sha256_hex

OUTPUT_PREFIX = "outputs/"


@dataclass(frozen=True)
class Finding:
    """One difference between the store and the database."""

    kind: str  # "missing_object", "checksum_mismatch", "size_mismatch", "orphan_object"
    key: str
    output_id: str | None
    detail: str


def _live_outputs() -> Iterator[tuple[str, str, str, int]]:
    rows = Output.objects.order_by("pk")
    # Purged outputs keep their row for lineage but have no object any more.
    if any(field.name == "purged_at" for field in Output._meta.get_fields()):
        rows = rows.filter(purged_at__isnull=True)
    yield from rows.values_list("pk", "storage_key", "sha256", "size_bytes").iterator(
        chunk_size=2000
    )


def reconcile(store: ObjectStore, *, deep: bool = False) -> Iterator[Finding]:
    """Yield every row without its object (or with other bytes) and every object without a row.

    With ``deep`` the object's bytes are downloaded and hashed; otherwise the SHA-256 the
    store recorded at upload (S3 ``ChecksumSHA256``) is compared.
    """
    # 1. every row against its object
    for output_id, key, sha256, size in _live_outputs():
        try:
            if deep:
                data = store.get(key)
                found_sha, found_size = sha256_hex(data), len(data)
            else:
                head = store.head(key)
                found_sha, found_size = head.sha256, head.size
        except ObjectMissing:
            yield Finding("missing_object", key, str(output_id), "the row's object does not exist")
            continue
        if found_size != size:
            yield Finding(
                "size_mismatch",
                key,
                str(output_id),
                f"row says {size} bytes, store has {found_size}",
            )
        if found_sha != sha256:
            yield Finding(
                "checksum_mismatch",
                key,
                str(output_id),
                f"row says {sha256}, store has {found_sha or 'no checksum'}",
            )
    # 2. every object against a row, in chunks so a large bucket stays in bounded memory
    keys = store.iter_keys(OUTPUT_PREFIX)
    while chunk := list(islice(keys, 1000)):
        known = set(
            Output.objects.filter(storage_key__in=chunk).values_list("storage_key", flat=True)
        )
        for key in chunk:
            if key not in known:
                yield Finding("orphan_object", key, None, "no output row refers to this object")
