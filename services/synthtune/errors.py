"""Domain errors shared by every layer.

Stages raise these; the CLI maps them to exit codes once, the gRPC interceptor to status
codes once, and the controller retries only ``RetryableError``.
"""

from __future__ import annotations

# Exit codes of the contract; Kubernetes Jobs use EXIT_PERMANENT in a podFailurePolicy.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_RETRYABLE = 75  # EX_TEMPFAIL: the Job may be retried
EXIT_INTERRUPTED = 130


class SynthtuneError(Exception):
    """Base of every error synthtune raises on purpose."""

    exit_code = EXIT_FAILURE


class PermanentError(SynthtuneError):
    """Retrying will not help (bad data, bad config, a bug)."""


class InvalidInput(PermanentError):
    """The user's input or spec is wrong; the message names the file, line or record."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        base = super().__str__()
        if not self.problems:
            return base
        return base + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class NotFound(PermanentError):
    """A run, artifact, file or model that was asked for does not exist."""

    exit_code = EXIT_BAD_INPUT


class RetryableError(SynthtuneError):
    """A transient fault (network, 429/5xx, preemption); the caller may retry after ``delay`` s.

    The CLI exits 1 for it (the contract); Job entry points exit EXIT_RETRYABLE so a
    podFailurePolicy can tell it from a permanent failure.
    """

    def __init__(self, message: str, delay: float = 0.0) -> None:
        super().__init__(message)
        self.delay = delay


class Cancelled(SynthtuneError):
    """The work was cancelled by the user."""

    exit_code = EXIT_INTERRUPTED


class StageSkipped(SynthtuneError):
    """The stage has nothing to do (e.g. a method generated no usable data); the run goes on without it."""


def error_kind(exc: BaseException) -> str:
    """How a failure is reported across processes (run records, Job outcomes; the CLI's exit code
    follows from it): skipped, cancelled, not_found, invalid_input, retryable or failed."""
    if isinstance(exc, StageSkipped):
        return "skipped"
    if isinstance(exc, Cancelled):
        return "cancelled"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, InvalidInput):
        return "invalid_input"
    if isinstance(exc, RetryableError):
        return "retryable"
    return "failed"

