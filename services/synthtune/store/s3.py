"""S3 backend (MinIO or any S3) through the ``minio`` client; objects stream in parts."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import S3Error

from synthtune.errors import InvalidInput, NotFound, RetryableError
from synthtune.store.backend import HashingReader
from synthtune.store.keys import check_key

PART_SIZE = 16 * 1024 * 1024
_NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class _Stream(io.RawIOBase):
    """A readable stream over a minio response that releases the connection on close."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._response.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()


class S3Backend:
    """Keys live under ``s3://bucket/prefix/``."""

    def __init__(self, client: Minio, bucket: str, prefix: str = "", endpoint: str = "") -> None:
        self.client, self.bucket, self.prefix, self.endpoint = client, bucket, prefix.strip("/"), endpoint

    @classmethod
    def from_env(cls, bucket: str, prefix: str = "") -> S3Backend:
        endpoint = os.environ.get("SYNTHTUNE_S3_ENDPOINT", "").strip()
        where = f"s3://{bucket}/{prefix}".rstrip("/")
        if not endpoint:
            raise InvalidInput(f"store {where}: set SYNTHTUNE_S3_ENDPOINT to the S3 endpoint, e.g. http://minio:9000")
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInput(f"SYNTHTUNE_S3_ENDPOINT={endpoint!r}: expected http(s)://host[:port]")
        access = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise InvalidInput(f"store {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for {endpoint}")
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=120),
            retries=urllib3.Retry(total=3, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]),
        )
        client = Minio(
            parsed.netloc,
            access_key=access,
            secret_key=secret,
            session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
            secure=parsed.scheme == "https",
            region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None,
            http_client=http,
        )
        backend = cls(client, bucket, prefix, endpoint)
        backend.check_bucket()
        return backend

    def check_bucket(self) -> None:
        try:
            found = self.client.bucket_exists(self.bucket)
        except S3Error as exc:
            raise InvalidInput(f"store {self.uri()}: {exc.code}: {exc.message} (check the credentials)") from None
        except _NETWORK_ERRORS as exc:
            raise RetryableError(f"store {self.uri()}: cannot reach {self.endpoint}: {exc}") from None
        if not found:
            raise InvalidInput(f"store {self.uri()}: bucket {self.bucket!r} does not exist at {self.endpoint}")

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str = "") -> str:
        base = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{base}/{key}" if key else base

    def _call(self, what: str, key: str, fn: Any) -> Any:
        try:
            return fn()
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket"):
                raise NotFound(f"{self.uri(key)}: no such object in the store") from None
            if exc.code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
                raise RetryableError(f"{what} {self.uri(key)}: {exc.code}: {exc.message}", delay=1.0) from None
            raise InvalidInput(f"{what} {self.uri(key)}: {exc.code}: {exc.message}") from None
        except _NETWORK_ERRORS as exc:
            raise RetryableError(f"{what} {self.uri(key)}: cannot reach {self.endpoint}: {exc}", delay=1.0) from None

    def put_file(self, key: str, path: Path) -> str:
        size = path.stat().st_size
        with open(path, "rb") as f:
            reader = HashingReader(f)
            # One part at a time: parallel part uploads would need a seekable stream and
            # would hash out of order; loopback measurements show no loss (benchmarks/).
            self._call(
                "upload", key,
                lambda: self.client.put_object(self.bucket, self._key(key), cast(BinaryIO, reader), size, part_size=PART_SIZE, num_parallel_uploads=1),
            )
        return reader.hexdigest()

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("upload", key, lambda: self.client.put_object(self.bucket, self._key(key), io.BytesIO(data), len(data)))

    def open_read(self, key: str) -> BinaryIO:
        response = self._call("download", key, lambda: self.client.get_object(self.bucket, self._key(key)))
        return cast(BinaryIO, io.BufferedReader(_Stream(response), buffer_size=1024 * 1024))

    def exists(self, key: str) -> bool:
        try:
            self._call("stat", key, lambda: self.client.stat_object(self.bucket, self._key(key)))
        except NotFound:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix.rstrip("/")) + "/" if prefix else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        objects = self._call("list", prefix, lambda: list(self.client.list_objects(self.bucket, prefix=full, recursive=True)))
        for obj in sorted(objects, key=lambda o: o.object_name):
            yield obj.object_name[strip:]

    def delete_prefix(self, prefix: str) -> None:
        for key in list(self.list(prefix)):
            self._call("delete", key, lambda k=key: self.client.remove_object(self.bucket, self._key(k)))
