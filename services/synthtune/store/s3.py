"""S3 backend (MinIO or any S3) through the ``minio`` client, streaming in bounded parts."""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import urlparse

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)
from urllib3.util import Retry, Timeout

from synthtune.errors import InvalidInput, NotFound, PermanentError, RetryableError
from synthtune.store.backend import HashingReader
from synthtune.store.keys import check_key

# Upload parts of 8 MiB, at most PARALLEL_PARTS in flight: peak memory ~ (PARALLEL_PARTS + 1) parts.
PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 3
MAX_PARTS = 10_000  # the S3 limit on parts per multipart upload
# How long one store operation keeps retrying an endpoint that is down or busy (a restarting MinIO,
# a network blip) before the error reaches the stage; SYNTHTUNE_S3_RETRY_S overrides it.
DEFAULT_RETRY_S = 60.0

log = logging.getLogger("synthtune.store")
T = TypeVar("T")

_MISSING_KEY = {"NoSuchKey", "NoSuchObject", "NotFound"}
_MISSING_BUCKET = {"NoSuchBucket"}
_AUTH = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
_TRANSIENT = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed"}


def part_size_for(size: int) -> int:
    """The part size for an object of ``size`` bytes: PART_SIZE, grown only past 10,000 parts."""
    return max(PART_SIZE, math.ceil(size / MAX_PARTS / PART_SIZE) * PART_SIZE)


def _http_client(retries: int) -> urllib3.PoolManager:
    """minio's own pool settings, with a bounded retry count so an unreachable endpoint fails fast."""
    return urllib3.PoolManager(
        timeout=Timeout(connect=float(os.environ.get("SYNTHTUNE_S3_CONNECT_TIMEOUT", "10")), read=300.0),
        maxsize=PARALLEL_PARTS + 4,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


class _StreamingObject(io.RawIOBase):
    """A read-only stream over one GET response; closing it returns the connection to the pool."""

    def __init__(self, response: Any, uri: str) -> None:
        super().__init__()
        self._response, self._uri = response, uri

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._response.read(None if size is None or size < 0 else size)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RetryableError(f"{self._uri}: download interrupted ({exc})") from None
        return cast(bytes, data)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._response.release_conn()
        super().close()


class S3Backend:
    """Objects under ``s3://bucket/prefix/``; each put is atomic, so manifest-last works here too."""

    def __init__(self, client: Minio, bucket: str, prefix: str = "", endpoint: str = "", retry_s: float | None = None) -> None:
        self.client, self.bucket, self.endpoint = client, bucket, endpoint
        self.retry_s = _retry_s() if retry_s is None else retry_s
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)

    @classmethod
    def from_env(cls, bucket: str, prefix: str = "", check: bool = True) -> S3Backend:
        """A backend from SYNTHTUNE_S3_ENDPOINT and the AWS_* variables; checks the bucket is reachable."""
        where = f"store URI s3://{bucket}/{prefix.strip('/')}".rstrip("/")
        endpoint = os.environ.get("SYNTHTUNE_S3_ENDPOINT", "").strip()
        if not endpoint:
            raise InvalidInput(f"{where}: set SYNTHTUNE_S3_ENDPOINT to the S3 endpoint (e.g. http://minio:9000)")
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
            raise InvalidInput(
                f"{where}: SYNTHTUNE_S3_ENDPOINT={endpoint!r} must be http(s)://host[:port] with no path"
            )
        access_key = os.environ.get("AWS_ACCESS_KEY_ID")
        secret_key = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not access_key or not secret_key:
            raise InvalidInput(f"{where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for {endpoint}")
        try:
            client = Minio(
                parsed.netloc,
                access_key=access_key,
                secret_key=secret_key,
                session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
                secure=parsed.scheme == "https",
                region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
                http_client=_http_client(int(os.environ.get("SYNTHTUNE_S3_RETRIES", "3"))),
            )
        except ValueError as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        backend = cls(client, bucket, prefix, endpoint)
        if check:
            backend.check_bucket()
        return backend

    def check_bucket(self) -> None:
        """Raise a clear error when the endpoint is unreachable or the bucket does not exist."""
        with self._errors(""):
            try:
                exists = self.client.bucket_exists(self.bucket)
            except ValueError as exc:  # minio validates bucket names before sending anything
                raise InvalidInput(f"{self.uri()}: {exc}") from None
        if not exists:
            raise InvalidInput(f"{self.uri()}: bucket {self.bucket!r} does not exist at {self.endpoint}")

    def uri(self, key: str = "") -> str:
        path = "/".join(p for p in (self.prefix, key) if p)
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _folder(self, prefix: str) -> str:
        """Listing prefix with folder semantics: ``a/b`` lists ``a/b/...``, never ``a/bc``."""
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        parts = [p for p in (self.prefix, prefix) if p]
        return "/".join(parts) + "/" if parts else ""

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Map minio and network errors to domain errors naming the object's URI."""
        uri = self.uri(key)
        try:
            yield
        except S3Error as exc:
            if exc.code in _MISSING_KEY:
                raise NotFound(f"{uri}: no such object in the store") from None
            if exc.code in _MISSING_BUCKET:
                raise InvalidInput(f"{uri}: bucket {self.bucket!r} does not exist at {self.endpoint}") from None
            if exc.code in _AUTH:
                raise InvalidInput(
                    f"{uri}: access refused by {self.endpoint} ({exc.code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                ) from None
            if exc.code in _TRANSIENT:
                raise RetryableError(f"{uri}: S3 said {exc.code}: {exc.message}", delay=1.0) from None
            raise PermanentError(f"{uri}: S3 said {exc.code}: {exc.message}") from None
        except (ServerError, InvalidResponseError) as exc:
            raise RetryableError(f"{uri}: S3 server error from {self.endpoint}: {exc}", delay=1.0) from None
        except MinioException as exc:
            raise PermanentError(f"{uri}: {exc}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # urllib3 wraps the socket error as "HTTPConnection(host=..., port=...): Failed to ...": keep the tail.
            cause = str(getattr(exc, "reason", None) or exc).rsplit("): ", 1)[-1]
            raise RetryableError(f"{uri}: cannot reach S3 endpoint {self.endpoint} ({cause})", delay=1.0) from None

    def _call(self, key: str, fn: Callable[[], T]) -> T:
        """``fn`` with its errors mapped; a retryable one (endpoint down, 5xx, SlowDown) is retried with
        jittered exponential backoff for up to ``retry_s`` seconds, then raised (the stage may retry)."""

        def warn(rs: RetryCallState) -> None:
            log.warning("%s: retrying in %.1f s (attempt %d): %s", self.uri(key), rs.upcoming_sleep, rs.attempt_number,
                        rs.outcome.exception() if rs.outcome else "")

        retrying = Retrying(retry=retry_if_exception_type(RetryableError), stop=stop_after_delay(self.retry_s),
                            wait=wait_exponential_jitter(initial=0.5, max=8.0, jitter=0.5), before_sleep=warn, reraise=True)
        for attempt in retrying:
            with attempt, self._errors(key):
                return fn()
        raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover

    def put_file(self, key: str, path: Path) -> str:
        """Upload in parts; return the sha256, hashed as the parts are read (one pass over the file)."""
        name = self._name(key)
        size = Path(path).stat().st_size

        def upload() -> str:  # each try reads the file again from its start
            with open(path, "rb") as f:
                # minio reads parts in order in this thread and only sends them in parallel, so the
                # hash sees the bytes in file order.
                reader = HashingReader(f)
                self.client.put_object(
                    self.bucket, name, cast(BinaryIO, reader), size,
                    part_size=part_size_for(size), num_parallel_uploads=PARALLEL_PARTS,
                )
            return reader.hexdigest()

        return self._call(key, upload)

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._name(key)
        self._call(key, lambda: self.client.put_object(self.bucket, name, io.BytesIO(data), len(data), part_size=part_size_for(len(data))))

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """A PUT with ``If-None-Match: *``: S3 (and MinIO) refuse it with 412 when the key exists.

        A retry after a PUT whose answer was lost may see its own object and answer False."""
        name = self._name(key)

        def put() -> bool:
            try:
                # put_object() has no way to pass a precondition header; the one-request PUT underneath does.
                self.client._put_object(self.bucket, name, data, headers={"If-None-Match": "*", "Content-Type": "application/octet-stream"})
            except S3Error as exc:
                if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
            return True

        return self._call(key, put)

    def open_read(self, key: str) -> BinaryIO:
        name = self._name(key)
        response = self._call(key, lambda: self.client.get_object(self.bucket, name))
        return cast(BinaryIO, _StreamingObject(response, self.uri(key)))

    def exists(self, key: str) -> bool:
        name = self._name(key)
        try:
            self._call(key, lambda: self.client.stat_object(self.bucket, name))
        except NotFound:
            return False
        return True

    def version(self, key: str) -> str:
        """The object's ETag: changes whenever its content does (a local copy keyed by it stays current)."""
        name = self._name(key)
        return str(self._call(key, lambda: self.client.stat_object(self.bucket, name).etag))

    def list(self, prefix: str) -> Iterator[str]:
        folder = self._folder(prefix)
        skip = len(self.prefix) + 1 if self.prefix else 0
        # Listed whole inside one try, so a retry after an outage never yields a name twice.
        names = self._call(prefix, lambda: [o.object_name for o in self.client.list_objects(self.bucket, prefix=folder, recursive=True)
                                            if o.object_name and not o.is_dir])
        for name in names:
            yield name[skip:]

    def delete_prefix(self, prefix: str) -> None:
        self._call(prefix, lambda: self._delete_prefix(prefix))

    def _delete_prefix(self, prefix: str) -> None:
        folder = self._folder(prefix)
        names = [o.object_name for o in self.client.list_objects(self.bucket, prefix=folder, recursive=True)]
        if prefix.strip("/"):
            names.append(self._name(prefix.strip("/")))  # the key itself, if it is an object
        for start in range(0, len(names), 1000):  # S3 deletes at most 1,000 keys per request
            batch = [DeleteObject(n) for n in names[start : start + 1000] if n]
            errors = list(self.client.remove_objects(self.bucket, batch))
            failed = [e for e in errors if e.code not in _MISSING_KEY]
            if failed:
                raise PermanentError(f"{self.uri(prefix)}: could not delete {failed[0].name} ({failed[0].code})")


def _retry_s() -> float:
    """SYNTHTUNE_S3_RETRY_S: seconds one store operation retries an unreachable or busy endpoint."""
    raw = os.environ.get("SYNTHTUNE_S3_RETRY_S", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_RETRY_S
    except ValueError:
        raise InvalidInput(f"SYNTHTUNE_S3_RETRY_S={raw!r} must be a number of seconds") from None
    if not value >= 0:
        raise InvalidInput(f"SYNTHTUNE_S3_RETRY_S={raw!r} must be 0 or more seconds")
    return value
