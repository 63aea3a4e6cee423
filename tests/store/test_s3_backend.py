"""S3 specifics: endpoint and credential errors, multipart uploads, streaming reads, listing and deletes."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from minio import Minio

from synthtune.errors import InvalidInput, NotFound, RetryableError
from synthtune.store import S3Backend, open_store
from synthtune.store.s3 import MAX_PARTS, PART_SIZE, part_size_for

pytestmark = pytest.mark.integration


def test_part_size_stays_bounded_and_fits_the_part_limit():
    assert part_size_for(0) == part_size_for(200 * 2**20) == PART_SIZE
    huge = 200 * 2**30
    assert part_size_for(huge) * MAX_PARTS >= huge and part_size_for(huge) % PART_SIZE == 0


def test_unreachable_endpoint_is_retryable_and_names_uri_and_cause(s3_env, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_S3_ENDPOINT", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(RetryableError) as exc:
        open_store("s3://some-bucket/x")
    message = str(exc.value)
    assert message.startswith("s3://some-bucket/x: cannot reach S3 endpoint http://127.0.0.1:9")
    assert "Connection refused" in message and "Traceback" not in message
    assert time.monotonic() - started < 15  # bounded retries, not minutes of backoff


def test_missing_bucket_names_bucket_and_endpoint(s3_env):
    with pytest.raises(InvalidInput, match=rf"s3://no-such-bucket-here/x: bucket 'no-such-bucket-here' does not exist at {s3_env}"):
        open_store("s3://no-such-bucket-here/x")


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [("minio:9000", "must be http\\(s\\)://host"), ("ftp://minio:9000", "must be http"), ("http://minio:9000/path", "no path")],
)
def test_malformed_endpoint(s3_env, monkeypatch, endpoint, message):
    monkeypatch.setenv("SYNTHTUNE_S3_ENDPOINT", endpoint)
    with pytest.raises(InvalidInput, match=message):
        open_store("s3://bucket/x")


def test_missing_credentials(s3_env, monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(InvalidInput, match=r"s3://bucket/x: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        open_store("s3://bucket/x")


def test_invalid_bucket_name(s3_env):
    with pytest.raises(InvalidInput, match="s3://Bad_Bucket"):
        open_store("s3://Bad_Bucket/x")


def test_large_file_goes_up_in_parts_and_hashes_in_one_pass(s3_store_uri, tmp_path):
    backend = open_store(s3_store_uri).backend
    assert isinstance(backend, S3Backend)
    data = os.urandom(2 * PART_SIZE + 12345)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    digest = backend.put_file("blobs/big.bin", src)
    assert digest == hashlib.sha256(data).hexdigest()
    stat = backend.client.stat_object(backend.bucket, f"{backend.prefix}/blobs/big.bin")
    assert stat.etag is not None and stat.etag.endswith("-3")  # three parts: a multipart upload
    with backend.open_read("blobs/big.bin") as f:
        chunks = []
        while chunk := f.read(PART_SIZE // 2):
            assert len(chunk) <= PART_SIZE // 2
            chunks.append(chunk)
    assert b"".join(chunks) == data


def test_streams_closed_early_release_their_connection(s3_store_uri):
    backend = open_store(s3_store_uri).backend
    backend.put_bytes("blobs/a.bin", os.urandom(3 * 2**20))
    for _ in range(30):  # more than the pool holds: a leaked connection per read would show
        f = backend.open_read("blobs/a.bin")
        assert len(f.read(1024)) == 1024
        f.close()
        assert f.closed
    with backend.open_read("blobs/a.bin") as f:
        assert len(f.read()) == 3 * 2**20
    pools = list(backend.client._http.pools._container.values())
    assert sum(p.num_connections for p in pools) <= 3  # a leaked response would force a new connection each time


def test_missing_object_is_not_found(s3_store_uri):
    backend = open_store(s3_store_uri).backend
    with pytest.raises(NotFound, match=rf"{s3_store_uri}/nope.json: no such object"):
        backend.open_read("nope.json")
    assert not backend.exists("nope.json")


def test_prefix_isolates_stores_in_one_bucket(s3_store_uri, s3_env):
    bucket = s3_store_uri.split("/")[2]
    one, two = open_store(f"s3://{bucket}/one"), open_store(f"s3://{bucket}/two")
    one.put_json("runs/r/run.json", {"n": 1})
    assert list(two.list_keys("")) == [] and list(one.list_keys("")) == ["runs/r/run.json"]
    two.put_json("runs/r/run.json", {"n": 2})
    one.backend.delete_prefix("runs")
    assert list(one.list_keys("")) == [] and two.get_json("runs/r/run.json") == {"n": 2}


def test_delete_prefix_is_a_folder_not_a_string_prefix(s3_store_uri):
    backend = open_store(s3_store_uri).backend
    for key in ("runs/r1/run.json", "runs/r1/a/b.json", "runs/r10/run.json", "runs/r1"):
        backend.put_bytes(key, b"{}")
    backend.delete_prefix("runs/r1")
    assert list(backend.list("runs")) == ["runs/r10/run.json"]


def test_bucket_root_store(s3_env):
    bucket = "root-store-bucket"
    Minio(s3_env.split("://", 1)[1], access_key="testing", secret_key="testing", secure=False).make_bucket(bucket)
    store = open_store(f"s3://{bucket}")
    assert store.uri == f"s3://{bucket}"
    store.put_json("runs/r/run.json", {})
    assert list(store.list_keys("")) == ["runs/r/run.json"]
    assert store.backend.uri("runs/r/run.json") == f"s3://{bucket}/runs/r/run.json"


def test_an_endpoint_that_stays_down_is_retried_for_the_configured_time_then_reported(s3_env, monkeypatch):
    monkeypatch.setenv("SYNTHTUNE_S3_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("SYNTHTUNE_S3_RETRY_S", "1.5")
    backend = S3Backend.from_env("some-bucket", "x", check=False)
    started = time.monotonic()
    with pytest.raises(RetryableError, match=r"s3://some-bucket/x/k: cannot reach S3 endpoint http://127.0.0.1:9"):
        backend.put_bytes("k", b"data")
    assert 1.5 <= time.monotonic() - started < 12  # retried for SYNTHTUNE_S3_RETRY_S, then the last try's error
    monkeypatch.setenv("SYNTHTUNE_S3_RETRY_S", "soon")
    with pytest.raises(InvalidInput, match="SYNTHTUNE_S3_RETRY_S='soon' must be a number of seconds"):
        S3Backend.from_env("some-bucket", "x", check=False)
