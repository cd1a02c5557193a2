"""Weakly supervised (query, passage) pairs from text that installs offline, for contrastive pre-training.

E5 and GTE pre-train on naturally paired text (title -> body) before fine-tuning on labelled data; a
few thousand labelled pairs are far too little for a general embedder. These sources exist on any
Debian machine (or install from Debian's archive), need no model hub, and are DFSG-free:

| source | query | passage | licence |
|---|---|---|---|
| Debian package descriptions (`Translation-en`) | one-line summary | long description | each package's own DFSG-free licence |
| Python 3.11 documentation (`python3.11-doc`) | page title + section title | section text | PSF-2.0 |
| manual pages (`/usr/share/man/man{1,5,8}`) | NAME line ("what it does") | DESCRIPTION text | each package's own licence |

Pairs are deduplicated (normalised query and normalised passage), and any pair sharing a 10-word shingle
with an evaluation set (`../shared/data/eval`) is dropped, so evaluation stays held out.

    python -m training.weak_pairs --out runs/data/weak [--apt-update] [--install-docs] [--max-per-source N]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

APT_LISTS = Path("/var/lib/apt/lists")
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
MAN_ROOT = Path("/usr/share/man")
EVAL_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"

INSTRUCTIONS = {
    "debian": "Given a one-line summary of a software package, retrieve the description that it summarises",
    "python_docs": "Given a section title from technical documentation, retrieve the section text",
    "manpages": "Given what a command does, retrieve the manual page that describes it",
}
LICENCES = {
    "debian": "Debian package descriptions: each package's DFSG-free licence (Debian main)",
    "python_docs": "Python 3.11 documentation: PSF License Version 2 (Debian package python3.11-doc)",
    "manpages": "manual pages from installed Debian packages: each package's DFSG-free licence",
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
    from bs4 import BeautifulSoup

    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not found; install Debian's python3.11-doc (or pass --install-docs)")
    for page in sorted(root.rglob("*.html")):
        if page.parts[-2] in {"_static", "_sources"} or page.name in {"genindex.html", "search.html"}:
            continue
        soup = BeautifulSoup(page.read_text(errors="replace"), "html.parser")
        body = soup.find("div", attrs={"role": "main"}) or soup.find("div", class_="body")
        if body is None:
            continue
        title_tag = body.find("h1")
        page_title = _clean(title_tag.get_text(" ")).rstrip("¶").strip() if title_tag else page.stem
        for section in body.find_all("section"):
            heading = section.find(["h1", "h2", "h3", "h4"], recursive=False)
            if heading is None:
                continue
            title = _clean(heading.get_text(" ")).rstrip("¶").strip()
            parts = [_clean(child.get_text(" ")) for child in section.find_all(["p", "dl", "ul"], recursive=False)]
            passage = "\n".join(p for p in parts if p)
            query = title if title == page_title else f"{page_title}: {title}"
            yield Pair("python_docs", re.sub(r"^[\d.]+\s+", "", query), passage)


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


def build(out: Path, max_per_source: int | None = None, seed: int = 0) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    shingles = eval_shingles()
    seen: set[str] = set()
    counts = {}
    for source, pairs in (("debian", debian_pairs()), ("python_docs", python_doc_pairs()), ("manpages", man_pairs())):
        kept = list(select(pairs, shingles, seen))
        random.Random(seed).shuffle(kept)
        kept = kept[:max_per_source] if max_per_source else kept
        with (out / f"{source}.jsonl").open("w") as handle:
            for pair in kept:
                handle.write(json.dumps(pair.to_example(), ensure_ascii=False) + "\n")
        counts[source] = len(kept)
        print(f"{source}: {len(kept)} pairs -> {out / (source + '.jsonl')}", file=sys.stderr)
    (out / "SOURCES.json").write_text(json.dumps({"counts": counts, "licences": LICENCES,
                                                  "instructions": INSTRUCTIONS}, indent=2))
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/data/weak"))
    parser.add_argument("--max-per-source", type=int, default=None)
    parser.add_argument("--apt-update", action="store_true", help="fetch English package descriptions first")
    parser.add_argument("--install-docs", action="store_true", help="apt-get install python3.11-doc first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.apt_update:
        subprocess.run(["apt-get", "update", "-o", "Acquire::Languages=en"], check=True)
    if args.install_docs:
        subprocess.run(["apt-get", "install", "-y", "python3.11-doc"], check=True)
    build(args.out, args.max_per_source, args.seed)


if __name__ == "__main__":
    main()
