"""The JSONL format's validation (errors name file and line) and the builders on the shared data."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from training.data import (
    DataError,
    build_all,
    build_banking77,
    build_medquad,
    build_sts,
    load_stage_data,
    read_banking77,
    read_jsonl,
    write_jsonl,
)

from .conftest import synthetic

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "train"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/train not present")

GOOD = {"query": "q", "positive": "p", "negatives": ["n"], "instruction": "i", "task": "retrieval"}


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_round_trip_and_defaults(tmp_path):
    examples = synthetic("classification", 5, seed=0)
    write_jsonl(examples, tmp_path / "c.jsonl")
    assert read_jsonl(tmp_path / "c.jsonl") == examples
    path = write_lines(tmp_path / "d.jsonl", [{k: v for k, v in GOOD.items() if k != "negatives"}, "",
                                              {**GOOD, "task": "sts"}])
    first, second = read_jsonl(path)
    assert first.negatives == [] and first.symmetric is False
    assert second.symmetric is True  # non-retrieval tasks are symmetric unless the line says otherwise


@pytest.mark.parametrize("row, message", [
    ({**GOOD, "task": "ranking"}, "unknown task 'ranking'"),
    ({k: v for k, v in GOOD.items() if k != "positive"}, "missing field 'positive'"),
    ({k: v for k, v in GOOD.items() if k != "instruction"}, "missing field 'instruction'"),
    ({**GOOD, "positive": "   "}, "positive is empty"),
    ({**GOOD, "negatives": "n"}, "negatives must be a list"),
    ({**GOOD, "negatives": ["n", ""]}, "negatives[1] is empty"),
    ({**GOOD, "negatives": ["p"]}, "negatives[0] is the positive itself"),
    ({**GOOD, "negative": ["n"]}, "unknown field 'negative'"),
    ({**GOOD, "symmetric": "yes"}, "symmetric must be true or false"),
    ({**GOOD, "query": 3}, "query must be a string"),
    ("{not json", "not valid JSON"),
    ([1, 2], "expected a JSON object"),
])
def test_bad_line_is_reported_with_file_and_line(tmp_path, row, message):
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, GOOD, row])
    with pytest.raises(DataError) as error:
        read_jsonl(path)
    assert f"{path}:3: " in str(error.value)
    assert message in str(error.value)


def test_every_problem_of_every_file_is_reported(tmp_path):
    a = write_lines(tmp_path / "a.jsonl", [{**GOOD, "task": "x"}, GOOD])
    b = write_lines(tmp_path / "b.jsonl", [GOOD, {**GOOD, "positive": ""}])
    with pytest.raises(DataError) as error:
        load_stage_data([a, b], stage=1)
    assert f"{a}:1:" in str(error.value) and f"{b}:2:" in str(error.value)


def test_empty_or_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="no examples"):
        read_jsonl(write_lines(tmp_path / "empty.jsonl", [""]))


def test_stage2_requires_non_retrieval_data(data_files):
    with pytest.raises(DataError, match="stage 2 needs non-retrieval data"):
        load_stage_data([data_files["retrieval"]], stage=2)
    names = [d.name for d in load_stage_data([data_files["retrieval"], data_files["sts"]], stage=2)]
    assert names == ["retrieval", "sts"]


@needs_shared
def test_banking77_is_example_based():
    rows = read_banking77(SHARED / "banking77" / "train.csv")
    intent = {t: c for t, c in rows}
    examples = build_banking77(SHARED / "banking77" / "train.csv", "classification", num_negatives=7)
    assert len(examples) == len(rows) == 10003
    for e in examples[:2000]:
        assert e.symmetric and e.task == "classification" and e.instruction.startswith("Given a online banking")
        assert intent[e.positive] == intent[e.query] and e.positive != e.query
        assert len(e.negatives) == 7
        assert all(intent[n] != intent[e.query] for n in e.negatives)
        assert len({intent[n] for n in e.negatives}) == 7  # seven different other intents
    clustering = build_banking77(SHARED / "banking77" / "train.csv", "clustering")
    assert clustering[0].task == "clustering" and clustering[0].instruction != examples[0].instruction


@needs_shared
def test_sts_pairs_both_directions_above_threshold():
    examples = build_sts(SHARED / "stsbenchmark" / "sts-train.csv")
    pairs = {(e.query, e.positive) for e in examples}
    assert all((b, a) in pairs for a, b in pairs)
    assert all(e.symmetric and e.task == "sts" and e.instruction == "Retrieve semantically similar text."
               for e in examples)
    assert all(e.query not in e.negatives and e.positive not in e.negatives for e in examples)
    assert len(examples) == 2810  # 1,405 pairs scoring >= 4 (distinct sentences), two directions


@needs_shared
def test_medquad_hard_negatives_never_answer_the_same_question(tmp_path):
    lines = (SHARED / "medquad" / "pairs.jsonl").read_text().splitlines()[:600]
    source = write_lines(tmp_path / "pairs.jsonl", lines)
    rows = [json.loads(line) for line in lines]
    answers = defaultdict(set)
    for row in rows:
        answers[row["query"].strip()].add(row["positive"])
    examples = build_medquad(source, num_negatives=7)
    assert len(examples) == 600
    for e in examples:
        assert e.task == "retrieval" and not e.symmetric
        assert not answers[e.query.strip()] & set(e.negatives)
        assert len(e.negatives) == len(set(e.negatives)) and e.negatives


def test_builders_refuse_the_evaluation_directory(tmp_path):
    (tmp_path / "cranfield").mkdir()
    with pytest.raises(ValueError, match="evaluation directory"):
        build_all(tmp_path, tmp_path / "out")


@needs_shared
def test_cli_validate(tmp_path, capsys):
    from training.data import main

    path = write_lines(tmp_path / "bad.jsonl", [GOOD, {**GOOD, "task": "nope"}])
    assert main(["validate", str(path)]) == 1
    assert f"{path}:2: unknown task" in capsys.readouterr().err


def test_cli_sample_takes_a_seeded_subset_and_can_drop_negatives(tmp_path, capsys):
    from training.data import main

    rows = [{**GOOD, "query": f"q{i}", "negatives": [f"n{i}"]} for i in range(10)]
    source = write_lines(tmp_path / "weak.jsonl", rows)
    assert main(["sample", str(source), "--out", str(tmp_path / "a"), "--max-per-file", "4"]) == 0
    assert main(["sample", str(source), "--out", str(tmp_path / "b"), "--max-per-file", "4",
                 "--drop-negatives"]) == 0
    assert f"{tmp_path / 'a' / 'weak.jsonl'}: 4 examples" in capsys.readouterr().out
    kept, dropped = read_jsonl(tmp_path / "a" / "weak.jsonl"), read_jsonl(tmp_path / "b" / "weak.jsonl")
    assert [e.query for e in kept] == [e.query for e in dropped]  # same seed, same rows, in file order
    assert [e.query for e in kept] == sorted((e.query for e in kept), key=lambda q: int(q[1:]))
    assert all(e.negatives == [f"n{e.query[1:]}"] for e in kept) and all(e.negatives == [] for e in dropped)
    bad = write_lines(tmp_path / "bad.jsonl", [{**GOOD, "task": "nope"}])
    assert main(["sample", str(bad), "--out", str(tmp_path / "c"), "--max-per-file", "4"]) == 1
    assert "unknown task" in capsys.readouterr().err and not (tmp_path / "c").exists()
