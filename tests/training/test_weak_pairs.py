"""The weak-pair builder: parsing of each source, deduplication, and the evaluation-overlap guard."""

import gzip
import re

import pytest

from training.weak_pairs import Pair, _man_sections, debian_pairs, man_pairs, overlaps, select

TRANSLATION = """Package: zebra-tools
Description-md5: 0
Description-en: utilities for striped animals
 Zebra tools count stripes on a photographed zebra and report the
 pattern as text for later comparison.
 .
 This package contains the command-line programs.

Package: zebra-tools-doc
Description-md5: 1
Description-en: documentation for zebra tools
 Zebra tools count stripes on a photographed zebra and report the
 pattern as text for later comparison.
"""


def test_debian_records_become_summary_to_description_pairs(tmp_path):
    (tmp_path / "x_Translation-en").write_text(TRANSLATION)
    pairs = list(debian_pairs(tmp_path))
    assert [p.query for p in pairs] == ["utilities for striped animals", "documentation for zebra tools"]
    assert pairs[0].positive == ("Zebra tools count stripes on a photographed zebra and report the pattern as "
                                 "text for later comparison.\nThis package contains the command-line programs.")


def test_man_page_name_and_description(tmp_path):
    page = (".TH LS 1\n.SH NAME\nls \\- list directory contents\n.SH SYNOPSIS\n.B ls\n.SH DESCRIPTION\n"
            ".PP\nList information about the \\fBFILEs\\fR (the current directory by default).\n"
            "Sort entries alphabetically if none of \\fB\\-cftuvSUX\\fR is specified.\n.SH AUTHOR\nsomeone\n")
    (tmp_path / "man1").mkdir()
    with gzip.open(tmp_path / "man1/ls.1.gz", "wt") as handle:
        handle.write(page)
    with gzip.open(tmp_path / "man1/dir.1.gz", "wt") as handle:
        handle.write(".so man1/ls.1\n")  # an alias: skipped
    assert _man_sections(page)["NAME"] == ["ls - list directory contents"]
    (pair,) = man_pairs(tmp_path, sections=["man1"])
    assert pair.query == "list directory contents"
    assert pair.positive.startswith("ls: List information about the FILEs (the current directory by default).")
    assert "-cftuvSUX" in pair.positive


def test_select_drops_duplicates_short_passages_and_eval_overlap():
    body = "a long enough passage about counting zebra stripes in photographs for later comparison by experts"
    leaked = "the boundary layer thickness grows with the square root of distance along the flat plate here"
    shingles = {hash(" ".join(leaked.split()[:10]))}
    pairs = [
        Pair("debian", "zebra stripe counter", body),
        Pair("debian", "zebra stripe counter", body + " again"),  # same query
        Pair("debian", "another name", body),  # same passage
        Pair("debian", "too short", "only five words are here"),
        Pair("debian", "flat plates", leaked),  # shares a 10-word window with an evaluation text
    ]
    kept = list(select(pairs, shingles, set()))
    assert [p.query for p in kept] == ["zebra stripe counter"]
    assert overlaps("prefix " + leaked, shingles) and not overlaps(body, shingles)


PACKAGE_INIT = '''"""Zebra stripe tools.

Count and compare the stripes of photographed zebras, and report the stripe pattern as text for comparison.
"""
'''

PACKAGE_CORE = '''"""Core routines."""


def count_stripes(image, threshold=0.5, *, colour="black"):
    """Count the stripes of a zebra photograph.

    The image is scanned line by line; every dark band wider than the threshold counts as one stripe, and
    the total is returned as an integer.
    """


def _private_helper():
    """Internal helper with a long enough docstring that it would otherwise be a pair of its own."""


class StripeReport:
    """A report of the stripes found.

    Holds the stripe count, the widths of the bands and the positions where each band starts and ends.
    """

    def as_text(self):
        """Render the report as plain text with one line per stripe band found in the photograph given."""

    async def _hidden(self):
        """Never collected: private methods are skipped even when they carry long docstrings like this one."""
'''


def _synthetic_site_packages(root):
    package = root / "zebra"  # root: a site-packages folder
    (package / "tests").mkdir(parents=True)
    (package / "__init__.py").write_text(PACKAGE_INIT)
    (package / "core.py").write_text(PACKAGE_CORE)
    (package / "broken.py").write_text('def f(:\n    """A syntax error: the file is skipped, not fatal."""\n')
    (package / "tests" / "test_core.py").write_text('"""Tests are not documentation: never collected here at all."""\n')
    (package / "_impl.py").write_text('def g():\n    """Private module: skipped, whatever its docstrings say here."""\n')
    (root / "zebra-1.0.dist-info").mkdir()


def test_docstrings_of_a_package_become_summary_to_body_pairs(tmp_path):
    from training.weak_pairs import docstring_pairs

    site = tmp_path / "site"
    _synthetic_site_packages(site)
    pairs = {p.query: p.positive for p in docstring_pairs([site])}
    assert pairs == {
        "Zebra stripe tools.": "zebra: Count and compare the stripes of photographed zebras, and report the stripe "
                               "pattern as text for comparison.",
        "Count the stripes of a zebra photograph.":
            "zebra.core.count_stripes(image, threshold=0.5, *, colour='black'): The image is scanned line by line; "
            "every dark band wider than the threshold counts as one stripe, and the total is returned as an integer.",
        "A report of the stripes found.": "zebra.core.StripeReport: Holds the stripe count, the widths of the bands "
                                          "and the positions where each band starts and ends.",
        "zebra.core.StripeReport.as_text(self)": "Render the report as plain text with one line per stripe band found "
                                                 "in the photograph given.",
        "zebra.core": "Core routines.",
    }
    assert len(list(docstring_pairs([site], max_per_package=2))) == 2
    # through the shared filter: short passages dropped, duplicates (a second copy of the package) dropped
    _synthetic_site_packages(tmp_path / "other")
    kept = list(select(docstring_pairs([site, tmp_path / "other"]), set(), set()))
    assert sorted(p.query for p in kept) == ["A report of the stripes found.", "Count the stripes of a zebra photograph.",
                                             "Zebra stripe tools.", "zebra.core.StripeReport.as_text(self)"]


def test_usr_share_doc_sections(tmp_path):
    from training.weak_pairs import usr_share_doc_pairs

    (tmp_path / "zebra-tools").mkdir()
    (tmp_path / "zebra-tools" / "README.md").write_text(
        "# Zebra tools\n\nIntro text.\n\n## Installation\n\nRun the installer and then restart the stripe daemon.\n"
        "```\nmake install\n```\n\n## Usage\n\nCall `zebra count photo.jpg` to count.\n")
    with gzip.open(tmp_path / "zebra-tools" / "README.Debian.gz", "wt") as handle:
        handle.write("Debian notes\n============\n\nThe configuration lives in /etc/zebra.\n")
    (tmp_path / "zebra-tools" / "changelog.md").write_text("# 1.0\n\nFirst release of everything.\n")
    (tmp_path / "python3.11").mkdir()
    (tmp_path / "python3.11" / "html").mkdir()
    (tmp_path / "python3.11" / "README.md").write_text("# Python\n\nThe python_docs source covers this.\n")
    pairs = [(p.query, p.positive) for p in usr_share_doc_pairs(tmp_path)]
    assert pairs == [  # files in name order; code blocks dropped; changelogs and Python's own docs skipped
        ("zebra-tools: Debian notes", "The configuration lives in /etc/zebra."),
        ("zebra-tools: Zebra tools", "Intro text."),
        ("zebra-tools: Installation", "Run the installer and then restart the stripe daemon."),
        ("zebra-tools: Usage", "Call `zebra count photo.jpg` to count."),
    ]


def test_usr_share_doc_cap_per_package_and_comments(tmp_path):
    from training.weak_pairs import usr_share_doc_pairs

    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "api.md").write_text("".join(f"## call{i}()\n\n<!-- YAML added: v{i} -->\nDoes thing {i}.\n\n"
                                                     for i in range(5)))
    pairs = list(usr_share_doc_pairs(tmp_path, max_per_package=3))
    assert [(p.query, p.positive) for p in pairs] == [(f"big: call{i}()", f"Does thing {i}.") for i in range(3)]


def test_science_docs_read_both_sphinx_layouts_and_skip_api_pages(tmp_path):
    from training.weak_pairs import science_doc_pairs

    old = ('<div class="body" role="main"><div class="section" id="a"><h1>Integration¶</h1>'
           '<p>Quadrature rules approximate a definite integral.</p>'
           '<div class="section" id="b"><h2>Romberg¶</h2><p>Richardson extrapolation of the trapezoid rule.</p>'
           '</div></div></div>')
    new = ('<div role="main"><section id="c"><h1>Units</h1><section id="d"><h2>Equivalencies</h2>'
           '<p>Spectral units convert between frequency and wavelength.</p></section></section></div>')
    api = '<div role="main"><section><h1>quad</h1><p>Compute a definite integral.</p></section></div>'
    for package, page, html in [("python-scipy-doc", "tutorial/integrate.html", old),
                                ("python-astropy-doc", "units/index.html", new),
                                ("python-astropy-doc", "api/astropy.units.html", api),
                                ("python-scipy-doc", "release.1.0.0.html", api)]:
        path = tmp_path / package / "html" / page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<html><body>{html}</body></html>")
    pairs = [(p.source, p.query, p.positive) for p in science_doc_pairs(tmp_path)]
    assert pairs == [
        ("science_docs", "Integration", "Quadrature rules approximate a definite integral."),
        ("science_docs", "Integration: Romberg", "Richardson extrapolation of the trapezoid rule."),
        ("science_docs", "Units", ""),
        ("science_docs", "Units: Equivalencies", "Spectral units convert between frequency and wavelength."),
    ]
    with pytest.raises(FileNotFoundError, match="python-sympy-doc"):
        list(science_doc_pairs(tmp_path / "python-scipy-doc"))


def test_more_science_docs_are_their_own_source(tmp_path):
    from training.weak_pairs import SOURCES, more_science_doc_pairs

    page = tmp_path / "python-statsmodels-doc" / "html" / "regression.html"
    page.parent.mkdir(parents=True)
    page.write_text('<html><body><div role="main"><section><h1>Linear regression</h1><section><h2>Robust errors</h2>'
                    '<p>Heteroscedasticity-consistent covariance estimators.</p></section></section></div></body></html>')
    assert [(p.source, p.query) for p in more_science_doc_pairs(tmp_path)] == [
        ("more_science_docs", "Linear regression"), ("more_science_docs", "Linear regression: Robust errors")]
    assert SOURCES["more_science_docs"] is more_science_doc_pairs
    with pytest.raises(FileNotFoundError, match="python-sklearn-doc"):
        list(more_science_doc_pairs(tmp_path / "nothing"))


def test_engineering_docstrings_come_from_unpacked_wheels(tmp_path):
    import zipfile

    from training.weak_pairs import engineering_docstring_pairs, unpack_wheels

    with pytest.raises(FileNotFoundError, match="fluids==1.3.1.*--fetch-wheels"):
        list(engineering_docstring_pairs(tmp_path))
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / "zebra-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("zebra/__init__.py", PACKAGE_INIT)
        wheel.writestr("zebra/core.py", PACKAGE_CORE)
        wheel.writestr("zebra-1.0.dist-info/METADATA", "Name: zebra\n")
    unpack_wheels(tmp_path / "wheels", tmp_path / "site")
    pairs = {p.query: (p.source, p.positive) for p in engineering_docstring_pairs(tmp_path)}
    assert pairs["Count the stripes of a zebra photograph."] == (
        "engineering_docstrings", "zebra.core.count_stripes(image, threshold=0.5, *, colour='black'): The image is "
        "scanned line by line; every dark band wider than the threshold counts as one stripe, and the total is "
        "returned as an integer.")
    assert {source for source, _ in pairs.values()} == {"engineering_docstrings"}


def test_every_wheel_source_is_pinned_and_named_by_its_own_error(tmp_path):
    from training.weak_pairs import (
        LICENCES,
        SOURCES,
        WHEEL_SOURCES,
        aerospace_docstring_pairs,
        wheel_docstring_pairs,
    )

    assert SOURCES["aerospace_docstrings"] is aerospace_docstring_pairs
    for source, (_folder, wheels) in WHEEL_SOURCES.items():
        assert source in SOURCES and source in LICENCES
        assert wheels and all(re.fullmatch(r"[\w.-]+==[\w.]+", spec) for spec in wheels), wheels
    assert len({folder for folder, _ in WHEEL_SOURCES.values()}) == len(WHEEL_SOURCES)
    with pytest.raises(FileNotFoundError, match="aerosandbox==4.2.10.*--fetch-wheels"):
        list(wheel_docstring_pairs("aerospace_docstrings", tmp_path))
    site = tmp_path / "site" / "zebra"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(PACKAGE_INIT)
    (site / "core.py").write_text(PACKAGE_CORE)
    pairs = list(aerospace_docstring_pairs(tmp_path))
    assert pairs and {p.source for p in pairs} == {"aerospace_docstrings"}


def test_building_one_more_source_keeps_the_others_in_the_record(tmp_path, monkeypatch):
    import json

    from training import weak_pairs

    def fake(source: str, n: int):
        return lambda: (Pair(source, f"topic number {i} of {source}",
                             f"A passage of enough distinct words about item {i} from {source} to pass the length filter here.")
                        for i in range(n))

    monkeypatch.setattr(weak_pairs, "eval_shingles", lambda: set())
    monkeypatch.setitem(weak_pairs.SOURCES, "debian", fake("debian", 3))
    monkeypatch.setitem(weak_pairs.SOURCES, "manpages", fake("manpages", 2))
    assert weak_pairs.build(tmp_path, sources=["debian"]) == {"debian": 3}
    assert weak_pairs.build(tmp_path, sources=["manpages"]) == {"manpages": 2}
    record = json.loads((tmp_path / "SOURCES.json").read_text())
    assert record["counts"] == {"debian": 3, "manpages": 2}
    (tmp_path / "debian.jsonl").unlink()  # a source whose file is gone leaves the record on the next build
    weak_pairs.build(tmp_path, sources=["manpages"])
    record = json.loads((tmp_path / "SOURCES.json").read_text())
    assert record["counts"] == {"manpages": 2}
    # the two manpages builds replaced each other and the debian one went with its file: one build is left
    assert [b["sources"] for b in record["builds"]] == [["manpages"]]
    assert any(d.startswith("pytest==") for d in record["builds"][0]["python_distributions"])
