"""Each format loads with its text, blocks, title and pages; bad bytes give a LoadError with a reason."""

from __future__ import annotations

import pytest

from index.errors import LoadError
from index.loaders import decode_text, detect_kind, load_bytes

from .docgen import make_blank_pdf, make_docx, make_html, make_pdf


def test_detect_kind():
    assert detect_kind("a/B.PDF") == "pdf"
    assert detect_kind("x.markdown") == "markdown"
    assert detect_kind("x.htm") == "html"
    assert detect_kind("x.exe") is None


def test_text_offsets_are_file_offsets():
    text = "First paragraph.\r\n\r\nSecond  one\nstill second.\n\n\n  Third.  "
    doc = load_bytes(text.encode(), "text")
    assert doc.text == text
    assert [doc.text[b.start : b.end] for b in doc.blocks] == ["First paragraph.", "Second  one\nstill second.", "Third."]
    assert doc.title == "First paragraph."


def test_markdown_headings_and_code_fence():
    md = "# Title\n\nIntro.\n\n```\ncode\n\nstill code\n```\n\n## Part\n\nBody text.\n"
    doc = load_bytes(md.encode(), "markdown")
    spans = [(doc.text[b.start : b.end], b.heading) for b in doc.blocks]
    assert spans[0] == ("# Title", True)
    assert ("```\ncode\n\nstill code\n```", False) in spans  # a fence with a blank line stays one block
    assert ("## Part", True) in spans
    assert doc.title == "Title"


def test_html_main_text_without_navigation():
    html = make_html("Lighthouses", ["Keepers log ships.", "Second paragraph."])
    doc = load_bytes(html.encode(), "html")
    assert "Keepers log ships." in doc.text
    for noise in ("Home About", "Site header", "Copyright footer", "script text", "color: red"):
        assert noise not in doc.text
    assert doc.title == "Lighthouses"
    assert any(b.heading for b in doc.blocks)


def test_html_navigation_by_class_dropped_article_header_kept():
    html = ('<html><body><div class="nav-panel">Next: Closures, Previous: Types</div>'
            '<div id="sidebar">Related pages</div><article><header><h1>Real title</h1></header>'
            '<p class="lead">Article text.</p></article></body></html>')
    doc = load_bytes(html.encode(), "html")
    assert "Next:" not in doc.text and "Related pages" not in doc.text
    assert "# Real title" in doc.text and "Article text." in doc.text


def test_html_declared_charset_and_table():
    html = ('<html><head><meta charset="windows-1252"><title>T</title></head><body>'
            '<p>Caf\xe9 cr\xe8me</p><table><tr><td>a</td><td>b</td></tr></table></body></html>')
    doc = load_bytes(html.encode("cp1252"), "html")
    assert "Café crème" in doc.text
    assert "a | b" in doc.text


def test_pdf_pages_kept():
    doc = load_bytes(make_pdf(["page one text", "", "page three text"]), "pdf")
    assert doc.pages == 3
    pages = {b.page for b in doc.blocks}
    assert pages == {1, 3}
    third = [b for b in doc.blocks if b.page == 3][0]
    assert "page three text" in doc.text[third.start : third.end]


def test_docx_headings_tables_title():
    data = make_docx([("h1", "Memo"), ("p", "Body paragraph."), ("table", "k|v;x|y")], title="Core title")
    doc = load_bytes(data, "docx")
    assert doc.title == "Core title"
    assert "Body paragraph." in doc.text and "k | v" in doc.text
    assert doc.blocks[0].heading and doc.text[doc.blocks[0].start : doc.blocks[0].end] == "Memo"


@pytest.mark.parametrize(
    "data, kind, reason",
    [
        (b"", "text", "empty file"),
        (bytes(range(256)) * 20, "text", "binary"),
        (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage", "pdf", "PDF"),
        (b"not a pdf at all", "pdf", "not a PDF"),
        (make_blank_pdf(2), "pdf", "no extractable text"),
        (b"PK\x03\x04 broken zip", "docx", "DOCX"),
        (b"   \n\n  ", "text", "no text"),
        (b"<html><body><nav>only nav</nav></body></html>", "html", "no text"),
    ],
)
def test_bad_inputs_raise_load_error(data, kind, reason):
    with pytest.raises(LoadError, match=reason):
        load_bytes(data, kind, "x")


def test_encodings_detected_or_replaced():
    text, enc, notes = decode_text("Größe über Straße und Müller, schön. ".encode("latin-1") * 4)
    assert "Größe" in text and notes
    text, enc, _ = decode_text("\ufeffhello".encode("utf-8"))
    assert text == "hello"
    text, enc, _ = decode_text("héllo wörld".encode("utf-16"))
    assert text == "héllo wörld"
    # an invalid UTF-8 byte inside otherwise ASCII text: decoded, never raised
    text, _, _ = decode_text(b"plain ascii text with one bad byte \xff in it " * 3)
    assert "plain ascii" in text
