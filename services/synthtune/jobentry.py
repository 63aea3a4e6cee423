"""Shared body of the Job entry points: read the request, run the stage, exit with a Job-friendly code.

Exit codes: 0 done (or nothing to do: StageSkipped); 2 bad request or input (permanent: a podFailurePolicy fails the Job);
75 retryable fault (the Job's backoffLimit retries it); 1 anything else. How it ended is also
written beside the request (``requests/<name>.result.json``: the artifact, or the error and
its kind), which is how the controller learns the result of a Job it submitted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from synthtune.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_RETRYABLE,
    PermanentError,
    SynthtuneError,
    error_kind,
)
from synthtune.progress import Progress, ProgressEvent


def _log(ev: ProgressEvent) -> None:
    if ev.message:
        print(json.dumps({"stage": ev.stage, "message": ev.message, "completed": ev.completed, "total": ev.total}), flush=True)


def _outcome(exc: BaseException) -> tuple[int, str, str]:
    """(exit code, error kind, message) of a failure."""
    kind = error_kind(exc)
    message = str(exc) if isinstance(exc, SynthtuneError) else f"{type(exc).__name__}: {exc}"
    if kind == "skipped":  # nothing to do is not a failure: the Job succeeds, the run goes on
        return EXIT_OK, kind, message
    if kind == "retryable":
        return EXIT_RETRYABLE, kind, message
    if kind in ("invalid_input", "not_found") or isinstance(exc, PermanentError):
        return EXIT_BAD_INPUT, kind, message  # permanent: the podFailurePolicy fails the Job at once
    return EXIT_FAILURE, kind, message


def main(stage: str, call: Callable[[Any, dict[str, Any], Any, Progress, dict[str, Any]], Any], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m synthtune.{stage}.job", description=f"Run the {stage} stage from a request in the store.")
    parser.add_argument("--request", required=True, help="URI of the request JSON, e.g. s3://bucket/synthtune/requests/train-1.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    store, key = None, ""
    try:
        from synthtune.spec import load_spec_text
        from synthtune.store import ArtifactRef, open_store
        from synthtune.store.requests import read_request, split_request_uri

        root, key = split_request_uri(args.request)
        store = open_store(root)  # first, so that even an unreadable request gets its outcome written
        _, request = read_request(args.request, store)
        spec = load_spec_text(request["spec_yaml"], f"{args.request}#spec_yaml", base_dir=request.get("base_dir"))
        inputs = {k: ArtifactRef(**v) if v else None for k, v in (request.get("inputs") or {}).items()}
        ref = call(spec, inputs, store, Progress(stage, [_log]), request)
        print(json.dumps({"result": ref.to_dict()}), flush=True)
        if not _write_result(store, key, {"result": ref.to_dict()}):
            return EXIT_RETRYABLE  # the work is done and cached; a rerun only writes the result
        return 0
    except Exception as exc:  # noqa: BLE001 - reported, and the Job's policy decides on the exit code
        code, kind, message = _outcome(exc)
        prefix = {EXIT_OK: "skipped", EXIT_BAD_INPUT: "bad request", EXIT_RETRYABLE: "retryable"}.get(code, "failed")
        print(f"{prefix}: {message}", file=sys.stderr)
        if store is not None:
            outcome = {"skipped": message} if kind == "skipped" else {"error": message}
            _write_result(store, key, {**outcome, "error_kind": kind, "exit_code": code})
        return code


def _write_result(store: Any, request_key: str, outcome: dict[str, Any]) -> bool:
    from synthtune.store.requests import result_key

    try:
        store.put_json(result_key(request_key), outcome)
    except Exception as exc:  # noqa: BLE001 - the exit code still tells the outcome
        print(f"could not write the result of {request_key}: {exc}", file=sys.stderr)
        return False
    return True
