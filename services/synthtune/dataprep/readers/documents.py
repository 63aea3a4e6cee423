"""Documents (PDF, TXT, Markdown) as overlapping chunks, each traceable to its page or line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from synthtune.dataprep.readers.decode import read_text
from synthtune.dataprep.rejects import Rejects
from synthtune.errors import InvalidInput

_BREAKS = ("\n\n", "\n", ". ", " ")


def chunk_spans(text: str, size: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) spans of at most ``size`` chars, ending at a paragraph/sentence/word break when one is near."""
    spans: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            window = text[start:end]
            for brk in _BREAKS:
                cut = window.rfind(brk)
                if cut >= size // 2:
                    end = start + cut + len(brk)
                    break
        spans.append((start, end))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        # Start the overlap at a word boundary, so no chunk opens mid-word.
        space = text.find(" ", nxt, end)
        start = space + 1 if 0 <= space < end - 1 else nxt
    return spans


def _chunks(text: str, size: int, overlap: int) -> list[tuple[int, str]]:
    out = []
    for s, e in chunk_spans(text, size, overlap):
        piece = text[s:e].strip()
        if piece:
            out.append((s, piece))
    return out


def _chunk_record(rid: str, text: str, source: dict[str, Any]) -> dict[str, Any]:
    return {"id": rid, "type": "chunk", "fields": {}, "text": text, "source": source}


def read_plain(path: Path, label: str, encoding: str | None, size: int, overlap: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    decoded = read_text(path, label, encoding, what="text")
    text = re.sub(r"\r\n?", "\n", decoded.text)
    records = []
    for i, (offset, piece) in enumerate(_chunks(text, size, overlap), 1):
        line = text.count("\n", 0, offset) + 1
        records.append(_chunk_record(f"{label}:c{i}", piece, {"file": label, "chunk": i, "line": line}))
    return records, {"encoding": decoded.encoding, "chunks": len(records)}


def read_pdf(path: Path, label: str, size: int, overlap: int, rejects: Rejects) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Chunks per page; pages without text go to rejects, and a PDF with no text at all is an error."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidInput(f"{label}: the PDF is encrypted with a password; provide a decrypted copy (e.g. qpdf --decrypt)")
        pages = list(reader.pages)
    except InvalidInput:
        raise
    except (PdfReadError, OSError, ValueError) as exc:
        message = str(exc)
        if "decrypt" in message.lower() or "encrypt" in message.lower():
            raise InvalidInput(f"{label}: the PDF is encrypted and cannot be read ({message})") from None
        raise InvalidInput(f"{label}: not a readable PDF ({message})") from None
    if not pages:
        raise InvalidInput(f"{label}: the PDF has no pages")
    records: list[dict[str, Any]] = []
    blank: list[int] = []
    for page_no, page in enumerate(pages, 1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - pypdf raises many types for one damaged page; keep the others
            rejects.add(f"{label}:p{page_no}", "read", "bad_page", f"{label}: page {page_no} could not be read ({exc})",
                        source={"file": label, "page": page_no})
            continue
        if not text.strip():
            blank.append(page_no)
            continue
        for i, (_, piece) in enumerate(_chunks(text, size, overlap), 1):
            records.append(_chunk_record(f"{label}:p{page_no}:c{i}", piece, {"file": label, "page": page_no, "chunk": i}))
    if not records:
        raise InvalidInput(
            f"{label}: none of its {len(pages)} page(s) has a text layer (a scanned or image-only PDF?); "
            "run OCR first, e.g. `ocrmypdf in.pdf out.pdf`"
        )
    for page_no in blank:
        rejects.add(f"{label}:p{page_no}", "read", "no_text_layer",
                    f"{label}: page {page_no} has no text layer (an image-only page?)", source={"file": label, "page": page_no})
    return records, {"pages": len(pages), "pages_without_text": blank, "chunks": len(records)}
