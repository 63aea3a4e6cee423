"""Bytes to text: BOMs, UTF-8, then charset detection; binary files refused with a clear reason."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from synthtune.errors import InvalidInput

# Magic numbers of formats people save with the wrong extension, so the error can say what it is.
_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook saved as another extension?)"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"PAR1", "a Parquet file"),
    (b"\xd0\xcf\x11\xe0", "an old binary Office file (.xls/.doc); save it as .xlsx or CSV"),
    (b"\x1f\x8b", "a gzip archive"),
)
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
# When detection finds several encodings that read the bytes equally well, the one most
# exports from Western industrial software use wins: cp1252 before its look-alikes.
_PREFERRED = ("cp1252", "cp1250", "cp1251", "iso8859_15", "latin_1", "cp1253", "cp1254", "cp1257",
              "shift_jis", "cp932", "gb18030", "gbk", "big5", "euc_kr", "euc_jp")
_DETECT_BYTES = 4 * 1024 * 1024
_CHAOS_SLACK = 0.05


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _refuse_binary(data: bytes, label: str, what: str) -> None:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            raise InvalidInput(f"{label}: this is {name}, not {what}")
    nul = data.find(b"\x00", 0, 65536)
    if nul >= 0:
        raise InvalidInput(f"{label}:{_line_of(data, nul)}: looks like binary data, not {what} (NUL byte at offset {nul})")


def _refuse_control_chars(text: str, label: str, what: str) -> None:
    sample = text[:65536]
    controls = sum(1 for c in sample if c not in "\t\n\r\f" and unicodedata.category(c) == "Cc")
    if sample and controls / len(sample) > 0.01:
        raise InvalidInput(f"{label}: looks like binary data, not {what} ({controls} control characters in the first {len(sample)})")


def _detect(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data[:_DETECT_BYTES]))
    if not matches:
        return None
    best = min(m.chaos for m in matches)
    close = [m.encoding for m in matches if m.chaos <= best + _CHAOS_SLACK]
    for name in _PREFERRED:
        if name in close:
            return name
    return close[0]


def _same_as_cp1252(data: bytes, text: str) -> bool:
    try:
        return data.decode("cp1252") == text
    except UnicodeDecodeError:
        return False


def decode_bytes(data: bytes, label: str, encoding: str | None = None, what: str = "text") -> DecodedText:
    """Decode ``data`` (from ``label``); ``encoding`` forces one, otherwise it is detected."""
    if not data.strip():
        raise InvalidInput(f"{label}: the file is empty ({len(data)} bytes)")
    if encoding:
        try:
            return DecodedText(data.decode(encoding), encoding)
        except LookupError:
            raise InvalidInput(f"{label}: unknown encoding {encoding!r} in source.encoding") from None
        except UnicodeDecodeError as exc:
            bad = data[exc.start:exc.start + 1].hex()
            raise InvalidInput(
                f"{label}:{_line_of(data, exc.start)}: byte 0x{bad} is not valid {encoding}; set source.encoding to "
                "the file's real encoding (e.g. cp1252) or remove it to detect the encoding"
            ) from None
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return DecodedText(data.decode(name), name)
            except UnicodeDecodeError as exc:
                raise InvalidInput(f"{label}:{_line_of(data, exc.start)}: starts with a {name} byte-order mark but is not valid {name}") from None
    _refuse_binary(data, label, what)
    try:
        text = data.decode("utf-8")
        _refuse_control_chars(text, label, what)
        return DecodedText(text, "utf-8")
    except UnicodeDecodeError:
        pass
    detected = _detect(data)
    if detected is None:
        raise InvalidInput(f"{label}: looks like binary data, not {what} (no text encoding fits its bytes)")
    for name in (detected, "cp1252", "latin_1"):
        try:
            text = data.decode(name)
        except UnicodeDecodeError:
            continue
        _refuse_control_chars(text, label, what)
        if name != "cp1252" and _same_as_cp1252(data, text):
            name = "cp1252"  # the same text either way: report the name people know
        return DecodedText(text, name)
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover


def read_text(path: Path, label: str, encoding: str | None = None, what: str = "text") -> DecodedText:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{label}: cannot read ({exc.strerror})") from None
    return decode_bytes(data, label, encoding, what)

