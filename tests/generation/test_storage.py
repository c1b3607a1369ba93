"""Content-addressed storage on the real S3 server and on local files."""

import pytest

from generation.storage import (
    LocalStore,
    ObjectMissing,
    StorageError,
    content_key,
    get_store,
    sha256_hex,
)


def test_s3_put_is_verified_by_the_store_and_readable_back(s3_bucket):
    store = get_store()
    data = b"\x89PNG fake but bytes" * 10
    digest = sha256_hex(data)
    stored = store.put(content_key(digest), data, digest, "image/png")
    assert store.get(stored.key) == data
    head = store.head(stored.key)
    assert (head.sha256, head.size) == (digest, len(data))


def test_s3_refuses_bytes_that_do_not_match_the_declared_sha256(s3_bucket):
    store = get_store()
    with pytest.raises(StorageError):
        store.put("outputs/zz/wrong.png", b"actual bytes", "0" * 64, "image/png")
    with pytest.raises(ObjectMissing):
        store.head("outputs/zz/wrong.png")


def test_s3_never_overwrites_an_existing_key(s3_bucket):
    store = get_store()
    first = b"first"
    store.put("outputs/aa/fixed.png", first, sha256_hex(first), "image/png")
    second = b"second"
    with pytest.raises(StorageError, match="exists with different content"):
        store.put("outputs/aa/fixed.png", second, sha256_hex(second), "image/png")
    assert store.get("outputs/aa/fixed.png") == first


def test_s3_download_url_is_presigned(s3_bucket):
    url = get_store().download_url("outputs/aa/x.png", "x.png")
    assert "Signature=" in url or "X-Amz-Signature=" in url


def test_local_store_writes_once_and_rejects_escaping_keys(tmp_path):
    store = LocalStore(tmp_path)
    data = b"pixels"
    digest = sha256_hex(data)
    store.put(content_key(digest), data, digest, "image/png")
    store.put(content_key(digest), data, digest, "image/png")  # same bytes again: fine
    assert [*store.iter_keys("outputs")] == [content_key(digest)]
    with pytest.raises(StorageError, match="escapes"):
        store.put("../evil.png", data, digest, "image/png")
    with pytest.raises(StorageError, match="checksum mismatch"):
        store.put("outputs/x.png", data, "0" * 64, "image/png")
