"""Documents (PDF, Markdown, text) to overlapping chunks that keep their page numbers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from synthtune.dataprep.readers import decode_bytes
from synthtune.errors import InvalidInput


@dataclass
class Chunk:
    id: str
    file: str
    page: int | None
    text: str


def read_pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
    except (PdfReadError, ValueError, OSError) as exc:
        raise InvalidInput(f"{path.name}: not a readable PDF ({exc})") from None
    if reader.is_encrypted:
        try:
            if reader.decrypt("") == 0:
                raise InvalidInput(f"{path.name}: the PDF is encrypted; export an unencrypted copy")
        except Exception as exc:
            if isinstance(exc, InvalidInput):
                raise
            raise InvalidInput(f"{path.name}: the PDF is encrypted ({exc}); export an unencrypted copy") from None
    pages = [(page.extract_text() or "") for page in reader.pages]
    if not any(p.strip() for p in pages):
        raise InvalidInput(
            f"{path.name}: the PDF has {len(pages)} page(s) but no text layer (scanned images?); run OCR first"
        )
    return pages


def _split(text: str, size: int, overlap: int) -> list[str]:
    """Chunks of about ``size`` characters, cut at paragraph or sentence ends, sharing ``overlap``."""
    text = re.sub(r"[ \t]+", " ", text).strip()
    if len(text) <= size:
        return [text] if text else []
    chunks, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            window = text[start:end]
            cut = max(window.rfind("\n\n"), window.rfind(". "), window.rfind("\n"))
            if cut > size // 2:
                end = start + cut + 1
        chunks.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return [c for c in chunks if c]


def read_document(path: Path, size: int, overlap: int, encoding: str | None = None) -> list[Chunk]:
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path.name}: the file is empty")
    if path.suffix.lower() == ".pdf":
        pages = read_pdf_pages(path)
        return [
            Chunk(f"{path.name}:p{p}:c{i}", path.name, p, text)
            for p, page in enumerate(pages, 1)
            for i, text in enumerate(_split(page, size, overlap), 1)
        ]
    text = decode_bytes(path.read_bytes(), path.name, encoding)
    return [Chunk(f"{path.name}:c{i}", path.name, None, t) for i, t in enumerate(_split(text, size, overlap), 1)]
