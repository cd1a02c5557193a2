"""Hypothesis state machine over add / modify / delete / re-ingest / upsert / reopen.

After every step: one vector per chunk, no orphan, no duplicate, the stored documents are exactly the ones
expected, every live document's unique sentence is found (keyword and dense search), and no sentence of a
deleted or replaced version is found any more.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import index
from index import segments
from index.config import VectorConfig
from index.testing import HashEncoder

from .conftest import small_config

NAMES = [f"f{i}.{ext}" for i in range(4) for ext in ("txt", "md", "html")]


def _render(name: str, paragraphs: list[str]) -> str:
    if name.endswith(".html"):
        return "<html><body><nav>menu</nav><main>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</main></body></html>"
    if name.endswith(".md"):
        return "# Title\n\n" + "\n\n".join(paragraphs) + "\n"
    return "\n\n".join(paragraphs) + "\n"


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="index-sm-"))
        self.docs = self.tmp / "docs"
        self.docs.mkdir()
        self.encoder = HashEncoder(dimension=512, max_length=128)
        self.ix = index.open(self.tmp / "ix", self.encoder, config=small_config())
        self.on_disk: dict[str, str] = {}  # file name -> its unique sentence
        self.indexed: dict[str, str] = {}  # what the index should hold now
        self.retired: set[str] = set()  # sentences of deleted or replaced versions
        self.serial = 0

    def _sentence(self) -> str:
        self.serial += 1
        return f"uq{self.serial}a uq{self.serial}b uq{self.serial}c"

    def _forget(self, name: str) -> None:
        old = self.indexed.pop(name, None)
        if old is not None:
            self.retired.add(old)

    @rule(name=st.sampled_from(NAMES), filler=st.integers(0, 12))
    def write_file(self, name: str, filler: int) -> None:
        sentence = self._sentence()
        paragraphs = [f"Common filler words number {j} about the shared topic." for j in range(filler)]
        paragraphs.insert(filler // 2, sentence)
        (self.docs / name).write_text(_render(name, paragraphs))
        self.on_disk[name] = sentence

    @rule(name=st.sampled_from(NAMES))
    def remove_file(self, name: str) -> None:
        if name in self.on_disk:
            (self.docs / name).unlink()
            del self.on_disk[name]

    @rule()
    def reingest(self) -> None:
        report = self.ix.ingest(self.docs)
        assert not report.failed, report.failed
        expected_unchanged = {n for n, s in self.on_disk.items() if self.indexed.get(n) == s}
        assert {Path(p).name for p in report.unchanged} == expected_unchanged
        if not self.on_disk:  # an empty folder is never pruned (it may be an unmounted drive)
            assert report.prune_note or not self.indexed
            return
        for name in list(self.indexed):
            if self.on_disk.get(name) != self.indexed[name]:
                self._forget(name)
        self.indexed.update(self.on_disk)
        self.retired -= set(self.on_disk.values())

    @rule(name=st.sampled_from(NAMES))
    def upsert_one(self, name: str) -> None:
        if name in self.on_disk:
            self.ix.upsert(self.docs / name)
            if self.indexed.get(name) != self.on_disk[name]:
                self._forget(name)
            self.indexed[name] = self.on_disk[name]
            self.retired.discard(self.on_disk[name])

    @rule(name=st.sampled_from(NAMES))
    def delete_one(self, name: str) -> None:
        report = self.ix.delete(self.docs / name)
        assert (report.deleted != []) == (name in self.indexed)
        self._forget(name)

    @rule()
    def reopen(self) -> None:
        self.ix.close()
        self.ix = index.open(self.tmp / "ix", self.encoder)

    @rule(layout=st.sampled_from(["segments", "single"]))
    def reopen_in_layout(self, layout: str) -> None:
        """The next commits write this layout: single -> segments is the migration of an old index."""
        self.ix.close()
        self.ix = index.open(self.tmp / "ix", self.encoder, config=small_config(vectors=VectorConfig(layout=layout)))

    @invariant()
    def disk_matches_memory(self) -> None:
        """What a fresh reader loads (segments minus deletions, after merges) is the writer's in-memory index."""
        directory = self.tmp / "ix"
        name = self.ix.record.vector_file
        on_disk = {p.name for p in directory.iterdir() if segments.is_vector_file(p.name)}
        assert on_disk == segments.referenced_files(directory, name)  # no stray or missing file
        with index.open(directory) as reader:
            ids, vectors = reader.vectors.all_vectors()
        mine, mine_vectors = self.ix.vectors.all_vectors()
        order, my_order = np.argsort(ids), np.argsort(mine)
        assert np.array_equal(ids[order], mine[my_order])
        assert np.allclose(vectors[order], mine_vectors[my_order])

    @invariant()
    def consistent(self) -> None:
        report = self.ix.check()
        assert report.ok, report.describe()
        ids = self.ix.vectors.ids()
        assert len(ids) == len(set(ids.tolist())) == report.chunks  # one vector per chunk, no duplicate
        assert sorted(Path(d.path).name for d in self.ix.documents()) == sorted(self.indexed)

    @invariant()
    def searchable(self) -> None:
        for name, sentence in self.indexed.items():
            top = self.ix.search(sentence, k=1, mode="keyword")
            assert top and Path(top[0].path).name == name, (name, sentence, top[:1])
            dense = self.ix.search(sentence, k=3)
            assert name in {Path(h.path).name for h in dense}, (name, sentence)
        for sentence in self.retired:
            token = sentence.split()[0]
            assert not self.ix.search(token, k=1, mode="keyword"), f"{token} of a deleted version is still found"

    def teardown(self) -> None:
        self.ix.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


IndexMachine.TestCase.settings = settings(max_examples=15, stateful_step_count=20, deadline=None, database=None)
TestIndexStateMachine = IndexMachine.TestCase
