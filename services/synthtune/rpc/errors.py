"""Domain errors to gRPC status codes, mapped in one place; INTERNAL leaks nothing."""

from __future__ import annotations

import logging
import uuid

import grpc

from synthtune.errors import Cancelled, InvalidInput, NotFound, RetryableError, StageSkipped

log = logging.getLogger("synthtune.rpc")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str, str]:
    """(status code, client-safe message, error id) for an exception raised by a handler or a stage.

    Domain errors are written for users, so their text (InvalidInput's with every problem) goes
    to the client. Anything else may carry paths, credentials or stack details: the client gets
    a generic message and an error id, and the details go to the server log under that id.
    """
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc), ""
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc), ""
    if isinstance(exc, RetryableError):
        return grpc.StatusCode.UNAVAILABLE, str(exc), ""
    if isinstance(exc, Cancelled):
        return grpc.StatusCode.CANCELLED, str(exc), ""
    if isinstance(exc, StageSkipped):  # nothing to do: the caller goes on without this stage's artifact
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc), ""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s: %s: %s", error_id, type(exc).__name__, exc, exc_info=exc, extra={"error_id": error_id})
    return grpc.StatusCode.INTERNAL, f"internal error (error id {error_id}; details are in the server log)", error_id
