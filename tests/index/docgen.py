"""Build small documents of every supported kind at test time (no fixtures checked in)."""

from __future__ import annotations

import io
from pathlib import Path


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str]) -> bytes:
    """A valid PDF with one Helvetica text line per input line, one page per string ('' = no text)."""
    objects: list[bytes] = []
    n = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(pages):
        content_id = 5 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {content_id} 0 R >>".encode()
        )
        ops = ["BT", "/F1 11 Tf", "72 740 Td", "14 TL"]
        for line in text.splitlines():
            ops.append(f"({_pdf_escape(line.encode('latin-1', 'replace').decode('latin-1'))}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def make_blank_pdf(pages: int = 2) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def make_docx(items: list[tuple[str, str]], title: str | None = None) -> bytes:
    """items: (style, text) with style 'h1', 'h2', 'p' or 'table' (text 'a|b;c|d')."""
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    for style, text in items:
        if style.startswith("h"):
            document.add_heading(text, level=int(style[1:]))
        elif style == "table":
            rows = [r.split("|") for r in text.split(";")]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for i, row in enumerate(rows):
                for j, cell in enumerate(row):
                    table.cell(i, j).text = cell
        else:
            document.add_paragraph(text)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


def make_html(title: str, body_paragraphs: list[str], nav: str = "Home About Contact") -> str:
    paras = "".join(f"<p>{p}</p>" for p in body_paragraphs)
    return (f"<!doctype html><html><head><title>{title}</title><style>p {{color: red}}</style></head><body>"
            f"<nav>{nav}</nav><header><a href='/'>Site header</a></header><main><h1>{title}</h1>{paras}</main>"
            f"<footer>Copyright footer</footer><script>var x = 'script text';</script></body></html>")


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def mixed_folder(root: Path) -> dict[str, str]:
    """A folder with one document of each kind; returns {file name: a sentence unique to it}."""
    unique = {
        "notes.txt": "The quokka sleeps under the eucalyptus tree.",
        "guide.md": "Calibrate the flux capacitor before every journey.",
        "page.html": "Lighthouse keepers log every passing ship.",
        "report.pdf": "Quarterly revenue of the walrus division grew strongly.",
        "memo.docx": "The archive moves to the basement on Friday.",
    }
    write(root / "notes.txt", "Plain notes.\n\n" + unique["notes.txt"] + "\n")
    write(root / "guide.md", "# Guide\n\nSome intro.\n\n## Steps\n\n" + unique["guide.md"] + "\n")
    write(root / "sub" / "page.html", make_html("Lighthouses", ["Intro text.", unique["page.html"]]))
    write(root / "report.pdf", make_pdf(["Cover page of the report", unique["report.pdf"]]))
    write(root / "memo.docx", make_docx([("h1", "Memo"), ("p", unique["memo.docx"]), ("table", "a|b;c|d")]))
    return unique
