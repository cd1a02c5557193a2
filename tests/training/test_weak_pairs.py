"""The weak-pair builder: parsing of each source, deduplication, and the evaluation-overlap guard."""

import gzip

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
