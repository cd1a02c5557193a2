"""Training data: the JSON Lines format, its validation, and builders for the shared training sets.

One example per line:

    {"query": "...", "positive": "...", "negatives": ["...", ...], "instruction": "...",
     "task": "retrieval" | "classification" | "clustering" | "sts", "symmetric": false, "id": "optional"}

`query`, `positive`, `instruction` and `task` are required; `negatives` defaults to `[]`; `symmetric`
(the instruction also applies to the positive and negatives) defaults to false for retrieval and true for
the other tasks. Any other key is an error (a typo such as `negative` must not silently train without
negatives). Every problem is reported as `file:line: message`, all of them at once, and nothing trains.

The builders turn `../shared/data/train` into that format the NV-Embed-v2 way (nv-embed.md §3):
MedQuAD -> retrieval (hard negatives: answers about the same focus with another question type, and
answers of the same question type about another focus; never an answer to the same question text);
Banking77 -> example-based classification and clustering (positive = another text of the same intent,
negatives = texts of other intents); STS-B train -> pairs with score >= 4 in both directions, symmetric.
Only training splits are read; the evaluation sets (`eval/`, STS dev/test, Banking77 test) never are.

    python -m training.data build --source ../shared/data/train --out runs/data [--max-per-set N]
    python -m training.data validate FILE.jsonl [...]
    python -m training.data sample FILE.jsonl [...] --out DIR --max-per-file N [--drop-negatives]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from encoder.instructions import INSTRUCTIONS

from .config import TASKS

REQUIRED = ("query", "positive", "instruction", "task")
OPTIONAL = ("negatives", "symmetric", "id")
MAX_REPORTED = 20

MEDQUAD_INSTRUCTION = "Given a medical question, retrieve passages that answer the question"
BANKING_CLASSIFICATION = INSTRUCTIONS["Banking77"]
BANKING_CLUSTERING = "Identify the intent category of the given online banking query"
STS_INSTRUCTION = INSTRUCTIONS["STS"]


class DataError(ValueError):
    """Malformed training data; the message lists `file:line: problem` entries."""


@dataclass
class Example:
    query: str
    positive: str
    instruction: str
    task: str
    negatives: list[str] = field(default_factory=list)
    symmetric: bool = False
    id: str | None = None

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(data, ensure_ascii=False)


@dataclass
class Dataset:
    """The examples of one file; batches sample uniformly across data sets."""

    name: str
    examples: list[Example]

    @property
    def tasks(self) -> Counter:
        return Counter(e.task for e in self.examples)


def _check_text(value: Any, name: str) -> str | None:
    if not isinstance(value, str):
        return f"{name} must be a string, got {type(value).__name__}"
    if not value.strip():
        return f"{name} is empty"
    return None


def parse_example(data: Any) -> tuple[Example | None, list[str]]:
    """Validate one decoded line; return the example or the list of problems found in it."""
    if not isinstance(data, dict):
        return None, [f"expected a JSON object, got {type(data).__name__}"]
    problems = [f"missing field {key!r}" for key in REQUIRED if key not in data]
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    problems += [f"unknown field {key!r} (allowed: {', '.join(REQUIRED + OPTIONAL)})" for key in unknown]
    for key in ("query", "positive", "instruction"):
        if key in data:
            problem = _check_text(data[key], key)
            if problem:
                problems.append(problem)
    task = data.get("task")
    if "task" in data and task not in TASKS:
        problems.append(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
    negatives = data.get("negatives", [])
    if not isinstance(negatives, list):
        problems.append(f"negatives must be a list, got {type(negatives).__name__}")
        negatives = []
    for i, negative in enumerate(negatives):
        problem = _check_text(negative, f"negatives[{i}]")
        if problem:
            problems.append(problem)
        elif isinstance(data.get("positive"), str) and negative.strip() == data["positive"].strip():
            problems.append(f"negatives[{i}] is the positive itself")
    symmetric = data.get("symmetric", task != "retrieval")
    if not isinstance(symmetric, bool):
        problems.append(f"symmetric must be true or false, got {symmetric!r}")
    if "id" in data and not isinstance(data["id"], str | int):
        problems.append("id must be a string or an integer")
    if problems:
        return None, problems
    example = Example(
        query=data["query"], positive=data["positive"], instruction=data["instruction"], task=task,
        negatives=list(negatives), symmetric=symmetric, id=str(data["id"]) if "id" in data else None,
    )
    return example, []


def json_lines(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, value, problem) for every non-blank line; a line that is not JSON gives (n, None, why)."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"


def read_jsonl(path: str | Path) -> list[Example]:
    """Read and validate a whole file; raise DataError listing every `file:line: problem`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    examples: list[Example] = []
    problems: list[str] = []
    for number, data, problem in json_lines(path):
        if problem:
            problems.append(f"{path}:{number}: {problem}")
            continue
        example, found = parse_example(data)
        problems += [f"{path}:{number}: {p}" for p in found]
        if example is not None:
            examples.append(example)
    if problems:
        shown = problems[:MAX_REPORTED]
        more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise DataError(f"{len(problems)} problem(s) in training data:\n" + "\n".join(shown) + more)
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def write_jsonl(examples: Iterable[Example], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(example.to_json() + "\n")
            count += 1
    return count


def load_stage_data(paths: Sequence[str | Path], stage: int) -> list[Dataset]:
    """Read every file of a stage (all problems of all files reported together) and check the blend.

    Stage 2 must contain non-retrieval data: without it, it would only repeat stage 1 without in-batch
    negatives, which is not the paper's recipe and almost certainly a configuration mistake.
    """
    datasets: list[Dataset] = []
    problems: list[str] = []
    for path in paths:
        try:
            datasets.append(Dataset(Path(path).stem, read_jsonl(path)))
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        raise DataError("\n".join(problems))
    names = Counter(d.name for d in datasets)
    for i, dataset in enumerate(datasets):  # two files with one stem: keep names unique for the logs
        if names[dataset.name] > 1:
            dataset.name = f"{dataset.name}-{i}"
    tasks = Counter()
    for dataset in datasets:
        tasks.update(dataset.tasks)
    if stage == 2 and not any(task != "retrieval" for task in tasks):
        raise DataError(
            "stage 2 needs non-retrieval data (classification, clustering or sts) blended with retrieval; "
            f"got only {dict(tasks)} from {', '.join(map(str, paths))}"
        )
    return datasets


# --------------------------------------------------------------------------- builders


def _sample(rng: random.Random, pool: Sequence[str], k: int, exclude: set[str]) -> list[str]:
    """Up to k distinct texts from pool, none in `exclude` (rejection sampling, then a scan)."""
    chosen: list[str] = []
    seen = set(exclude)
    if len(pool) <= 4 * k:
        candidates = [t for t in dict.fromkeys(pool) if t not in seen]
        return rng.sample(candidates, min(k, len(candidates)))
    for _ in range(20 * k):
        text = pool[rng.randrange(len(pool))]
        if text not in seen:
            chosen.append(text)
            seen.add(text)
            if len(chosen) == k:
                break
    return chosen


def build_medquad(path: str | Path, num_negatives: int = 7, seed: int = 0) -> list[Example]:
    """MedQuAD question -> answer pairs with curated hard negatives (same focus or same question type)."""
    rows = [json.loads(line) for line in Path(path).open(encoding="utf-8") if line.strip()]
    answers_of_query: dict[str, set[str]] = defaultdict(set)
    by_focus: dict[str, list[str]] = defaultdict(list)
    by_qtype: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        answers_of_query[row["query"].strip()].add(row["positive"])
        by_focus[row["focus"]].append(row["positive"])
        by_qtype[row["qtype"]].append(row["positive"])
    rng = random.Random(seed)
    examples = []
    for row in rows:
        if not row["query"].strip() or not row["positive"].strip():
            continue
        exclude = answers_of_query[row["query"].strip()] | {row["positive"]}
        same_focus = _sample(rng, by_focus[row["focus"]], (num_negatives + 1) // 2, exclude)
        rest = _sample(rng, by_qtype[row["qtype"]], num_negatives - len(same_focus), exclude | set(same_focus))
        examples.append(Example(
            query=row["query"], positive=row["positive"], negatives=same_focus + rest,
            instruction=MEDQUAD_INSTRUCTION, task="retrieval", symmetric=False, id=row["id"],
        ))
    return examples


def read_banking77(path: str | Path) -> list[tuple[str, str]]:
    """(text, intent) rows of a Banking77 CSV (texts may contain commas and quotes)."""
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return [(row["text"].strip(), row["category"].strip()) for row in csv.DictReader(handle) if row["text"].strip()]


def build_banking77(path: str | Path, task: str = "classification", num_negatives: int = 7, seed: int = 0) -> list[Example]:
    """Example-based triplets: positive = another text of the same intent, negatives = other intents."""
    if task not in ("classification", "clustering"):
        raise ValueError(f"Banking77 builds classification or clustering examples, not {task!r}")
    rows = read_banking77(path)
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in rows:
        by_intent[intent].append(text)
    intents = sorted(by_intent)
    rng = random.Random(f"{seed}-{task}")
    instruction = BANKING_CLASSIFICATION if task == "classification" else BANKING_CLUSTERING
    examples = []
    for i, (text, intent) in enumerate(rows):
        same = [t for t in by_intent[intent] if t != text]
        if not same:
            continue
        others = rng.sample([c for c in intents if c != intent], min(num_negatives, len(intents) - 1))
        negatives = [rng.choice(by_intent[c]) for c in others]
        examples.append(Example(
            query=text, positive=rng.choice(same), negatives=[n for n in negatives if n != text],
            instruction=instruction, task=task, symmetric=True, id=f"banking77-{task}-{i}",
        ))
    return examples


def read_sts(path: str | Path) -> list[tuple[float, str, str]]:
    """(score, sentence1, sentence2) rows of an STS-B file (tab-separated, first 7 columns)."""
    out = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 7 and cols[5].strip() and cols[6].strip():
                out.append((float(cols[4]), cols[5].strip(), cols[6].strip()))
    return out


def build_sts(path: str | Path, num_negatives: int = 7, seed: int = 0, threshold: float = 4.0) -> list[Example]:
    """Pairs scoring >= threshold, both directions, instruction on both sides; random other sentences as negatives."""
    rows = read_sts(path)
    sentences = sorted({s for _, a, b in rows for s in (a, b)})
    rng = random.Random(seed)
    examples = []
    for i, (score, a, b) in enumerate(rows):
        if score < threshold or a == b:
            continue
        for j, (query, positive) in enumerate(((a, b), (b, a))):
            examples.append(Example(
                query=query, positive=positive, negatives=_sample(rng, sentences, num_negatives, {a, b}),
                instruction=STS_INSTRUCTION, task="sts", symmetric=True, id=f"sts-{i}-{j}",
            ))
    return examples


def subset(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    if limit is None or len(examples) <= limit:
        return examples
    chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in chosen]


def sample_files(files: Sequence[str | Path], out: str | Path, limit: int, seed: int = 0,
                 drop_negatives: bool = False) -> dict[str, int]:
    """Write a random subset (at most `limit`, in file order) of each JSONL file to `out` under its own name."""
    out = Path(out)
    counts = {}
    for path in map(Path, files):
        examples = subset(read_jsonl(path), limit, seed)
        if drop_negatives:
            examples = [replace(e, negatives=[]) for e in examples]
        counts[path.name] = write_jsonl(examples, out / path.name)
    return counts


def build_all(source: str | Path, out: str | Path, max_per_set: int | None = None, num_negatives: int = 7,
              seed: int = 0) -> dict[str, int]:
    """Write medquad / banking77-classification / banking77-clustering / sts JSONL files; return counts."""
    source, out = Path(source), Path(out)
    if source.name == "eval" or (source / "cranfield").exists():
        raise ValueError(f"{source} is an evaluation directory; builders read only the training sets")
    sets = {
        "medquad": lambda: build_medquad(source / "medquad" / "pairs.jsonl", num_negatives, seed),
        "banking77-classification": lambda: build_banking77(
            source / "banking77" / "train.csv", "classification", num_negatives, seed),
        "banking77-clustering": lambda: build_banking77(
            source / "banking77" / "train.csv", "clustering", num_negatives, seed),
        "sts": lambda: build_sts(source / "stsbenchmark" / "sts-train.csv", num_negatives, seed),
    }
    counts = {}
    for name, build in sets.items():
        counts[name] = write_jsonl(subset(build(), max_per_set, seed), out / f"{name}.jsonl")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the four training files from ../shared/data/train")
    build.add_argument("--source", default="../shared/data/train")
    build.add_argument("--out", default="runs/data")
    build.add_argument("--max-per-set", type=int, help="random subset of each set (small CPU runs)")
    build.add_argument("--negatives", type=int, default=7, help="hard negatives per example")
    build.add_argument("--seed", type=int, default=0)
    sample = commands.add_parser("sample", help="a random subset of each file, written under --out by name")
    sample.add_argument("files", nargs="+")
    sample.add_argument("--out", required=True)
    sample.add_argument("--max-per-file", type=int, required=True)
    sample.add_argument("--drop-negatives", action="store_true", help="keep query and positive only")
    sample.add_argument("--seed", type=int, default=0)
    validate = commands.add_parser("validate", help="check JSONL files and print per-task counts")
    validate.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "build":
        counts = build_all(args.source, args.out, args.max_per_set, args.negatives, args.seed)
        for name, count in counts.items():
            print(f"{Path(args.out) / (name + '.jsonl')}: {count} examples")
        return 0
    if args.command == "sample":
        try:
            counts = sample_files(args.files, args.out, args.max_per_file, args.seed, args.drop_negatives)
        except DataError as exc:
            print(exc, file=sys.stderr)
            return 1
        for name, count in counts.items():
            print(f"{Path(args.out) / name}: {count} examples")
        return 0
    try:
        for path in args.files:
            examples = read_jsonl(path)
            negatives = sum(len(e.negatives) for e in examples) / len(examples)
            tasks = ", ".join(f"{t} {n}" for t, n in sorted(Counter(e.task for e in examples).items()))
            print(f"{path}: {len(examples)} examples ({tasks}), {negatives:.1f} negatives per example")
    except DataError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
