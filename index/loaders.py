"""Turn one file's bytes into text plus block boundaries, with well-kept parsers and clear failure reasons.

Supported: plain text, Markdown (markdown-it-py finds the blocks and headings), HTML (lxml; the main text,
navigation and boilerplate elements dropped; lxml rather than BeautifulSoup's tree because it parses a
50 MB page in seconds, not minutes), PDF (pypdf, text per page, page numbers kept) and DOCX (python-docx,
headings from paragraph styles). Anything that cannot be read raises `LoadError` whose message is the
reason shown in the ingest summary; the caller never sees a parser's own exception type.

Offsets: `LoadedDocument.text` is the text the chunks are cut from. For plain text and Markdown it is the
decoded file itself, so chunk offsets are character offsets into the file; for HTML, PDF and DOCX it is the
extracted text (pages or blocks separated by blank lines).
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LoadError

#: File extension -> document kind.
KINDS: dict[str, str] = {
    ".txt": "text", ".text": "text", ".log": "text", ".rst": "text",
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}


@dataclass(frozen=True)
class Block:
    """A span of `LoadedDocument.text` that chunking keeps together when it can (a paragraph, a heading)."""

    start: int
    end: int
    page: int | None = None  # 1-based page for PDFs; a passage never spans two pages
    heading: bool = False  # a heading starts a new passage when the current one is big enough


@dataclass
class LoadedDocument:
    text: str
    blocks: list[Block]
    kind: str
    title: str | None = None
    encoding: str | None = None  # the text encoding detected, for text formats
    pages: int | None = None
    warnings: list[str] = field(default_factory=list)


def detect_kind(path: str | Path) -> str | None:
    """The document kind for a file name, or None when the type is not supported."""
    return KINDS.get(Path(path).suffix.lower())


def load_bytes(data: bytes, kind: str, name: str = "<bytes>") -> LoadedDocument:
    """Parse `data` as a document of `kind`. Raises `LoadError` with the reason when it cannot."""
    loader = _LOADERS.get(kind)
    if loader is None:
        raise LoadError(f"unsupported document type {kind!r}")
    if not data:
        raise LoadError("empty file (0 bytes)")
    try:
        doc = loader(data)
    except LoadError:
        raise
    except MemoryError:
        raise LoadError("out of memory while parsing") from None
    except Exception as exc:  # a parser bug or an input no parser expects: report, never crash the run
        raise LoadError(f"{kind} parser failed: {type(exc).__name__}: {exc}") from exc
    if not doc.text.strip() or not doc.blocks:
        raise LoadError("no text found in the file")
    return doc


# --------------------------------------------------------------------------------------------- text ----
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
]
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")


def _control_ratio(text: str) -> float:
    sample = text[:200_000]
    return len(_CONTROL.findall(sample)) / max(1, len(sample))


def decode_text(data: bytes, hint: str | None = None) -> tuple[str, str, list[str]]:
    """Decode bytes of unknown encoding: BOM, then `hint`, then UTF-8, then charset-normalizer's guess.

    Returns (text, encoding, warnings). Binary content raises `LoadError`; text whose encoding cannot be
    told is decoded as UTF-8 with replacement characters and a warning.
    """
    if not data:
        raise LoadError("empty file (0 bytes)")
    for bom, enc in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(enc, errors="replace"), enc, []
    if hint:
        try:
            return data.decode(hint), hint, []
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if "\x00" in text[:65536] or _control_ratio(text) > 0.05:
            raise LoadError("binary content (control characters), not text")
        return text, "utf-8", []
    from charset_normalizer import from_bytes

    best = from_bytes(data[:4_000_000]).best()
    if best is not None and best.encoding:
        enc = best.encoding
        text = data.decode(enc, errors="replace")
        if "\x00" not in text[:65536] and _control_ratio(text) <= 0.05:
            return text, enc, [f"not UTF-8: decoded as {enc}"]
    if b"\x00" in data[:65536] or _control_ratio(data[:200_000].decode("latin-1")) > 0.05:
        raise LoadError("binary content (NUL or control bytes), not text")
    return data.decode("utf-8", errors="replace"), "utf-8", ["encoding not recognised: undecodable bytes replaced"]


_PARA_RE = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def paragraph_blocks(text: str, start: int = 0, end: int | None = None, page: int | None = None) -> list[Block]:
    """Blocks for the paragraphs (separated by blank lines) of text[start:end], whitespace trimmed."""
    end = len(text) if end is None else end
    blocks = []
    pos = start
    for m in _PARA_RE.finditer(text, start, end):
        blocks.extend(_trimmed(text, pos, m.start(), page))
        pos = m.end()
    blocks.extend(_trimmed(text, pos, end, page))
    return blocks


def _trimmed(text: str, start: int, end: int, page: int | None, heading: bool = False) -> list[Block]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [Block(start, end, page, heading)] if end > start else []


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return None


def _load_text(data: bytes) -> LoadedDocument:
    text, enc, notes = decode_text(data)
    return LoadedDocument(text, paragraph_blocks(text), "text", _first_line(text), enc, warnings=notes)


# ----------------------------------------------------------------------------------------- markdown ----
def _line_starts(text: str) -> list[int]:
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    starts.append(len(text))
    return starts


def _load_markdown(data: bytes) -> LoadedDocument:
    from markdown_it import MarkdownIt

    text, enc, notes = decode_text(data)
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    starts = _line_starts(text)
    last = len(starts) - 1
    blocks: list[Block] = []
    title = None
    for i, tok in enumerate(tokens):
        if tok.level != 0 or tok.map is None or tok.nesting == -1:
            continue
        a, b = tok.map
        is_heading = tok.type == "heading_open"
        if is_heading and title is None and i + 1 < len(tokens):
            title = tokens[i + 1].content.strip()[:200] or None
        for blk in _trimmed(text, starts[min(a, last)], starts[min(b, last)], None, is_heading):
            blocks.append(blk)
    if not blocks:
        blocks = paragraph_blocks(text)
    return LoadedDocument(text, blocks, "markdown", title or _first_line(text), enc, warnings=notes)


# --------------------------------------------------------------------------------------------- html ----
_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "nav", "aside", "form", "iframe", "button",
              "select", "canvas", "object", "embed", "menu", "dialog")
_DROP_ROLES = ("navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar")
_BLOCK_TAGS = {"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "table", "tr",
               "thead", "tbody", "tfoot", "blockquote", "pre", "br", "hr", "figure", "figcaption", "address",
               "details", "summary", "caption", "body", "center", "fieldset", "h1", "h2", "h3", "h4", "h5", "h6"}
_CELL_TAGS = {"td", "th"}
# class or id words of navigation furniture in generated pages (texinfo, Sphinx, CMS themes)
_BOILERPLATE = {"nav", "navbar", "navigation", "nav-panel", "navpanel", "navheader", "navfooter", "breadcrumb",
                "breadcrumbs", "sidebar", "sphinxsidebar", "related", "menu", "skip-link", "cookie-banner"}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([\w.:-]+)""", re.IGNORECASE)


def _html_blocks(container) -> Iterator[tuple[str, int]]:
    """(paragraph text, heading level or 0) in document order; whitespace collapsed outside <pre>."""
    from lxml import etree

    parts: list[str] = []
    level = 0
    pre = 0

    def flush() -> Iterator[tuple[str, int]]:
        raw = "".join(parts)
        parts.clear()
        if pre:
            lines = [ln.rstrip() for ln in raw.split("\n")]
            para = "\n".join(ln for ln in lines if ln.strip())
        else:
            para = " ".join(raw.split())
        if para:
            yield para, level

    for event, el in etree.iterwalk(container, events=("start", "end")):
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if event == "start":
            if tag in _BLOCK_TAGS:
                yield from flush()
                if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
                    level = int(tag[1])
                if tag == "pre":
                    pre += 1
            if tag and el.text:
                parts.append(el.text)
        else:
            if tag in _BLOCK_TAGS:
                yield from flush()
                if tag[:1] == "h" and len(tag) == 2:
                    level = 0
                if tag == "pre":
                    pre = max(0, pre - 1)
            elif tag in _CELL_TAGS:
                parts.append(" | ")
            if el is not container and el.tail:
                parts.append(el.tail)
    yield from flush()


def _load_html(data: bytes) -> LoadedDocument:
    import lxml.html
    from lxml import etree

    m = _META_CHARSET.search(data[:4096])
    markup, enc, notes = decode_text(data, hint=m.group(1).decode("ascii", "replace") if m else None)
    markup = re.sub(r"^\s*<\?xml[^>]*\?>", "", markup)
    if not markup.strip():
        raise LoadError("no text found in the file")
    try:
        root = lxml.html.document_fromstring(markup)
    except (etree.ParserError, ValueError) as exc:
        raise LoadError(f"HTML could not be parsed: {exc}") from None
    title_el = root.find(".//title")
    title = " ".join(title_el.text_content().split())[:200] if title_el is not None else None
    head = root.find("head")
    if head is not None:
        head.drop_tree()
    drops = list(root.iter(*_DROP_TAGS, "header", "footer", etree.Comment, etree.ProcessingInstruction))
    drops += [el for el in root.xpath("//*[@role or @hidden or @aria-hidden]")
              if el.get("role") in _DROP_ROLES or el.get("hidden") is not None or el.get("aria-hidden") == "true"]
    drops += [el for el in root.xpath("//*[@class or @id]")
              if _BOILERPLATE.intersection(f"{el.get('class', '')} {el.get('id', '')}".lower().split())]
    for el in drops:
        if el.tag in ("header", "footer") and any(a.tag in ("article", "main") for a in el.iterancestors()):
            continue  # an article's own header/footer is content
        if el.getparent() is not None:
            el.drop_tree()
    mains = root.xpath("//main | //*[@role='main']")
    articles = root.xpath("//article")
    container = mains[0] if mains else articles[0] if len(articles) == 1 else root
    pieces: list[str] = []
    blocks: list[Block] = []
    pos = 0
    for para, level in _html_blocks(container):
        piece = f"{'#' * level} {para}" if level else para
        if title is None and level == 1:
            title = para[:200]
        blocks.append(Block(pos, pos + len(piece), None, level > 0))
        pieces.append(piece)
        pos += len(piece) + 2
    return LoadedDocument("\n\n".join(pieces), blocks, "html", title, enc, warnings=notes)


# ---------------------------------------------------------------------------------------------- pdf ----
def _load_pdf(data: bytes) -> LoadedDocument:
    from pypdf import PdfReader

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise LoadError("not a PDF file (no %PDF header)")
    notes: list[str] = []
    pypdf_log = logging.getLogger("pypdf")
    old_level = pypdf_log.level
    pypdf_log.setLevel(logging.ERROR + 10)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                reader = PdfReader(io.BytesIO(data), strict=False)
                if reader.is_encrypted and not reader.decrypt(""):
                    raise LoadError("encrypted PDF (a password is needed)")
                pages = list(reader.pages)
            except LoadError:
                raise
            except Exception as exc:
                raise LoadError(f"corrupt PDF: {type(exc).__name__}: {exc}") from None
            texts = []
            for number, page in enumerate(pages, 1):
                try:
                    texts.append((page.extract_text() or "").replace("\x00", ""))
                except Exception as exc:
                    notes.append(f"page {number}: text could not be extracted ({type(exc).__name__})")
                    texts.append("")
            try:
                meta_title = reader.metadata.title if reader.metadata else None
            except Exception:
                meta_title = None
    finally:
        pypdf_log.setLevel(old_level)
    if not any(t.strip() for t in texts):
        raise LoadError(f"PDF has no extractable text ({len(texts)} pages; scanned images need OCR, which is not supported)")
    text = "\n\n".join(texts)
    blocks: list[Block] = []
    pos = 0
    for number, page_text in enumerate(texts, 1):
        blocks.extend(paragraph_blocks(text, pos, pos + len(page_text), page=number))
        pos += len(page_text) + 2
    title = meta_title.strip()[:200] if isinstance(meta_title, str) and meta_title.strip() else _first_line(text)
    return LoadedDocument(text, blocks, "pdf", title, None, pages=len(texts), warnings=notes)


# --------------------------------------------------------------------------------------------- docx ----
def _load_docx(data: bytes) -> LoadedDocument:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise LoadError(f"corrupt or not a DOCX file: {type(exc).__name__}: {exc}") from None
    pieces: list[tuple[str, bool]] = []
    title = None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            for row in item.rows:
                cells: list[str] = []
                for cell in row.cells:
                    value = " ".join(cell.text.split())
                    if value and (not cells or cells[-1] != value):
                        cells.append(value)
                if cells:
                    pieces.append((" | ".join(cells), False))
            continue
        value = item.text.strip()
        if not value:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        heading = style.startswith("Heading") or style == "Title"
        if heading and title is None:
            title = value[:200]
        pieces.append((value, heading))
    try:
        core_title = document.core_properties.title
    except Exception:
        core_title = None
    text_parts: list[str] = []
    blocks: list[Block] = []
    pos = 0
    for value, heading in pieces:
        blocks.append(Block(pos, pos + len(value), None, heading))
        text_parts.append(value)
        pos += len(value) + 2
    text = "\n\n".join(text_parts)
    return LoadedDocument(text, blocks, "docx", (core_title or "").strip()[:200] or title or _first_line(text))


_LOADERS = {"text": _load_text, "markdown": _load_markdown, "html": _load_html, "pdf": _load_pdf, "docx": _load_docx}
