"""Metadata filters (path prefix or glob, document type, modified after/before) and their SQL.

A filter becomes a WHERE clause over `documents d`; dense search turns the matching chunk ids into a FAISS
id selector and keyword search adds the clause to its FTS5 query, so filtering happens inside the search
and a filtered search returns k results whenever k matching chunks exist.

CLI form (repeatable `--filter`): `path=DIR_OR_FILE`, `glob=PATTERN`, `type=pdf,md`, `after=2024-01-31`,
`before=2024-06-01T12:00`. Several values of one key are alternatives (OR); different keys all apply (AND).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import InvalidInputError
from .loaders import KINDS

_KIND_NAMES = set(KINDS.values())
_ALIASES = {ext.lstrip("."): kind for ext, kind in KINDS.items()} | {"md": "markdown", "txt": "text"}


def normalise_path(path: str | os.PathLike[str]) -> str:
    """The key a document is stored under: an absolute, normalised path (symlinks not resolved)."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def parse_time(value: str | float | datetime) -> float:
    """Seconds since the epoch from an ISO date/time (local time when naive) or a number."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise InvalidInputError(f"not a date or time: {value!r} (use e.g. 2024-01-31 or 2024-01-31T12:00)") from None


@dataclass(frozen=True)
class Filters:
    """Which documents a search may return; empty fields do not restrict."""

    paths: tuple[str, ...] = ()  # directories or files (prefix on whole path components)
    globs: tuple[str, ...] = ()  # SQLite GLOB patterns (* also matches /); without a / they match the file name
    kinds: tuple[str, ...] = ()  # document kinds or extensions: pdf, markdown/md, html, text/txt, docx
    modified_after: float | None = None  # file modified at or after (epoch seconds)
    modified_before: float | None = None  # file modified before (epoch seconds)

    def __post_init__(self) -> None:
        for kind in self.kinds:
            if _ALIASES.get(kind.lower().lstrip("."), kind.lower()) not in _KIND_NAMES:
                raise InvalidInputError(f"unknown document type {kind!r}; known: {', '.join(sorted(_ALIASES))}")

    @property
    def empty(self) -> bool:
        return not (self.paths or self.globs or self.kinds) and self.modified_after is None and self.modified_before is None

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Filters:
        """From CLI strings like `type=pdf`, `path=docs/`, `glob=*.md`, `after=2024-01-01`."""
        paths: list[str] = []
        globs: list[str] = []
        kinds: list[str] = []
        after = before = None
        for spec in specs:
            key, sep, value = spec.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                raise InvalidInputError(f"filter {spec!r} is not KEY=VALUE (keys: path, glob, type, after, before)")
            if key in ("path", "prefix"):
                paths.append(value)
            elif key == "glob":
                globs.append(value)
            elif key in ("type", "kind"):
                kinds.extend(v.strip() for v in value.split(",") if v.strip())
            elif key in ("after", "since", "modified_after"):
                after = parse_time(value)
            elif key in ("before", "until", "modified_before"):
                before = parse_time(value)
            else:
                raise InvalidInputError(f"unknown filter key {key!r} in {spec!r} (keys: path, glob, type, after, before)")
        return cls(tuple(paths), tuple(globs), tuple(kinds), after, before)

    def to_sql(self) -> tuple[str, dict[str, Any]]:
        """(" AND ..." clause over `d` = documents, bound parameters)."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if self.paths:
            alts = []
            for i, p in enumerate(self.paths):
                norm = normalise_path(p)
                params[f"fp{i}"] = norm
                params[f"fpd{i}"] = norm.rstrip(os.sep) + os.sep
                params[f"fpn{i}"] = len(norm.rstrip(os.sep)) + 1
                alts.append(f"d.path = :fp{i} OR substr(d.path, 1, :fpn{i}) = :fpd{i}")
            clauses.append("(" + " OR ".join(f"({a})" for a in alts) + ")")
        if self.globs:
            alts = []
            for i, g in enumerate(self.globs):
                if "/" in g or os.sep in g:
                    pattern = g if os.path.isabs(g) or g.startswith("*") else os.path.join(os.getcwd(), g)
                else:
                    pattern = "*" + os.sep + g
                params[f"fg{i}"] = pattern
                alts.append(f"d.path GLOB :fg{i}")
            clauses.append("(" + " OR ".join(alts) + ")")
        if self.kinds:
            names = sorted({_ALIASES.get(k.lower().lstrip("."), k.lower()) for k in self.kinds})
            for i, name in enumerate(names):
                params[f"fk{i}"] = name
            clauses.append("d.kind IN (" + ", ".join(f":fk{i}" for i in range(len(names))) + ")")
        if self.modified_after is not None:
            params["fafter"] = float(self.modified_after)
            clauses.append("d.mtime >= :fafter")
        if self.modified_before is not None:
            params["fbefore"] = float(self.modified_before)
            clauses.append("d.mtime < :fbefore")
        return "".join(f" AND {c}" for c in clauses), params
