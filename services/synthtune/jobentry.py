"""Shared body of the Job entry points: read the request, run the stage, exit with a Job-friendly code.

Exit codes: 0 done; 2 bad request or input (permanent: a podFailurePolicy fails the Job);
75 retryable fault (the Job's backoffLimit retries it); 1 anything else.
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
    EXIT_RETRYABLE,
    InvalidInput,
    NotFound,
    PermanentError,
    RetryableError,
)
from synthtune.progress import Progress, ProgressEvent


def _log(ev: ProgressEvent) -> None:
    if ev.message:
        print(json.dumps({"stage": ev.stage, "message": ev.message, "completed": ev.completed, "total": ev.total}), flush=True)


def main(stage: str, call: Callable[[Any, dict[str, Any], Any, Progress, dict[str, Any]], Any], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m synthtune.{stage}.job", description=f"Run the {stage} stage from a request in the store.")
    parser.add_argument("--request", required=True, help="URI of the request JSON, e.g. s3://bucket/synthtune/requests/train-1.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from synthtune.spec import load_spec_text
        from synthtune.store import ArtifactRef
        from synthtune.store.requests import read_request

        store, request = read_request(args.request)
        spec = load_spec_text(request["spec_yaml"], f"{args.request}#spec_yaml", base_dir=request.get("base_dir"))
        inputs = {k: ArtifactRef(**v) if v else None for k, v in (request.get("inputs") or {}).items()}
        ref = call(spec, inputs, store, Progress(stage, [_log]), request)
        print(json.dumps({"result": ref.to_dict()}), flush=True)
        return 0
    except (InvalidInput, NotFound) as exc:
        print(f"bad request: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RetryableError as exc:
        print(f"retryable: {exc}", file=sys.stderr)
        return EXIT_RETRYABLE
    except PermanentError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - reported, and the Job's retries decide
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
