"""Test PDFs built on the fly: text pages, image-only pages, encrypted files."""

from __future__ import annotations

from pathlib import Path


def text_pdf(path: Path, pages: list[str | None]) -> Path:
    """One page per entry; ``None`` draws only shapes (a page with no text layer, like a scan)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for text in pages:
        if text is None:
            c.rect(72, 72, 300, 500, fill=1)
        else:
            y = 800
            for line in text.split("\n"):
                c.drawString(72, y, line)
                y -= 14
        c.showPage()
    c.save()
    return path


def encrypt_pdf(source: Path, target: Path, password: str = "secret") -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(source).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password + "-owner")
    with open(target, "wb") as f:
        writer.write(f)
    return target
