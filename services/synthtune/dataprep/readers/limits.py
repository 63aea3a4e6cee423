"""Size, ratio and row bounds checked before a reader expands a file (zip bombs, runaway exports)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from synthtune.errors import InvalidInput
from synthtune.spec.source import SourceSpec

T = TypeVar("T")


class UnreadableFile(InvalidInput):
    """One input file cannot be read at all; the read goes on without it unless source.strict."""


def unreadable(read: Callable[..., T], *args: Any) -> T:
    """``read(*args)``, its bad-input errors marked as about the file itself (not the spec's mapping)."""
    try:
        return read(*args)
    except UnreadableFile:
        raise
    except InvalidInput as exc:
        raise UnreadableFile(str(exc.args[0]), exc.problems) from None


MAX_ZIP_RATIO = 100  # real workbooks compress 5-20x; far beyond that a member is built to expand
RATIO_FLOOR = 1024 * 1024  # small members may compress as well as they like


def _limit_bytes(source: SourceSpec) -> int:
    return int(source.max_file_mb * 1024 * 1024)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f} MB"


def check_file_size(path: Path, label: str, source: SourceSpec) -> None:
    """Refuse a file larger on disk than ``source.max_file_mb``."""
    size = path.stat().st_size
    if size > _limit_bytes(source):
        raise InvalidInput(f"{label}: {_mb(size)} is larger than source.max_file_mb ({source.max_file_mb:g} MB)")


def check_zip(path: Path, label: str, source: SourceSpec) -> None:
    """Refuse a zip container (.xlsx) whose members expand past the byte limit or by a bomb-like ratio."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{label}: not a readable .xlsx workbook ({exc})") from None
    total = sum(m.file_size for m in members)
    if total > _limit_bytes(source):
        raise InvalidInput(f"{label}: expands to {_mb(total)}, more than source.max_file_mb ({source.max_file_mb:g} MB)")
    for m in members:
        if m.file_size > RATIO_FLOOR and m.file_size > MAX_ZIP_RATIO * max(m.compress_size, 1):
            raise InvalidInput(
                f"{label}: member {m.filename} expands {m.file_size / max(m.compress_size, 1):,.0f}x "
                f"({_mb(m.compress_size)} to {_mb(m.file_size)}); refusing a file that looks built to expand (zip bomb)"
            )


def check_rows(count: int, label: str, source: SourceSpec) -> None:
    """Refuse a table once it has more than ``source.max_rows`` rows."""
    if count > source.max_rows:
        raise InvalidInput(f"{label}: more than source.max_rows ({source.max_rows:,}) rows; split the file or raise the limit")
